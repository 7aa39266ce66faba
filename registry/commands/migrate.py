"""`lading migrate`: database schema migrations."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from registry.commands.common import add_local_options, settings_from_args


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.action == "store-manifests":
        return _store_manifests(args)
    from registry.db import migrate
    from registry.db.engine import Database

    settings = settings_from_args(args, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    try:
        if args.action == "upgrade":
            migrate.upgrade(db, args.revision or "head")
        elif args.action == "downgrade":
            try:
                migrate.downgrade(db, args.revision or "-1")
            except RuntimeError as exc:
                # A migration refusing to lose data says why and what to do: no traceback.
                print(f"lading: downgrade refused: {exc}", file=sys.stderr)
                return 2
        print(migrate.current(db) or "base")
    finally:
        db.dispose()
    return 0


def _store_manifests(args: argparse.Namespace) -> int:
    """Write database-held manifests out to storage, which a downgrade below 0009 needs."""
    from registry.app import build_components
    from registry.db import migrate
    from registry.services.manifest_export import export_manifests, held_manifest_count

    settings = settings_from_args(args, data_dir=args.data_dir)
    components = build_components(settings)
    try:
        components.driver.check()
        if not migrate.is_up_to_date(components.db):
            print("the database is not at the current revision: nothing to store")
            return 1
        report = export_manifests(
            components.db,
            components.driver,
            progress=lambda stored: print(f"stored {stored} manifest(s)...", flush=True),
        )
        left = held_manifest_count(components.db)
    finally:
        components.db.dispose()
    print(
        f"stored {report.stored} manifest(s), {report.bytes} bytes, in storage"
        f" ({report.vanished} deleted meanwhile); {left} still held in the database"
    )
    if left:
        print("manifests were pushed meanwhile: stop the registry and run this again")
        return 1
    return 0


def register(sub: Any) -> None:
    mig = sub.add_parser(
        "migrate",
        help="database schema migrations",
        description="store-manifests writes manifests held in the database out to"
        " storage, as revisions before 0009 keep them; run it before a downgrade below 0009.",
    )
    mig.add_argument("action", choices=["upgrade", "downgrade", "current", "store-manifests"])
    mig.add_argument("revision", nargs="?", help="target revision (default head / -1)")
    add_local_options(mig)
    mig.set_defaults(func=cmd_migrate)
