"""One module per `lading` subcommand; each exposes register(subparsers)."""
