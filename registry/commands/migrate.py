"""`lading migrate`: database schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from registry.commands.common import settings_from_args


def cmd_migrate(args: argparse.Namespace) -> int:
    from registry.db import migrate
    from registry.db.engine import Database

    settings = settings_from_args(args, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    try:
        if args.action == "upgrade":
            migrate.upgrade(db, args.revision or "head")
        elif args.action == "downgrade":
            migrate.downgrade(db, args.revision or "-1")
        print(migrate.current(db) or "base")
    finally:
        db.dispose()
    return 0


def register(sub: Any) -> None:
    mig = sub.add_parser("migrate", help="database schema migrations")
    mig.add_argument("action", choices=["upgrade", "downgrade", "current"])
    mig.add_argument("revision", nargs="?", help="target revision (default head / -1)")
    mig.add_argument("--data-dir", default=None)
    mig.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    mig.set_defaults(func=cmd_migrate)
