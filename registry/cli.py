"""The ``lading`` command line: assembles the subcommands of ``registry.commands``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from registry.commands import admin_cli, fsck, gc, migrate, serve, users
from registry.settings import SettingsError
from storage.driver import StorageError

# Each module adds its own subcommand(s).
COMMAND_MODULES = [serve, migrate, gc, fsck, users, admin_cli]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lading", description="Lading container registry")
    parser.add_argument("--config", help="YAML settings file (also LADING_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (SettingsError, StorageError) as exc:
        # Configuration and unreachable storage are the operator's to fix: no traceback.
        print(f"lading: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
