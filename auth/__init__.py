"""Authentication and authorization for Lading (a leaf package: never imports `registry`).

See auth/README.md for the API the HTTP layer and the CLI use.
"""
