"""Side-by-side benchmark of Lading against CNCF distribution (see docs/performance.md)."""
