"""The ``lading`` command line: assembles the subcommands of ``registry.commands``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence

from registry.commands import admin_cli, fsck, gc, migrate, serve, users
from registry.commands.admin_client import one_line
from registry.settings import SettingsError
from storage.driver import StorageError


def database_trouble(exc: BaseException) -> bool:
    """A database that is down, refuses us, or a database_url no driver understands.

    Raw driver errors too: some reads bypass SQLAlchemy's wrapping (registry/db/engine.py).
    SQLAlchemy and psycopg are looked up, not imported: a command that never loaded them
    cannot have raised their errors, and the remote commands start faster without them.
    """
    kinds: list[type[BaseException]] = [sqlite3.OperationalError]
    alchemy = sys.modules.get("sqlalchemy.exc")
    if alchemy is not None:
        kinds += [alchemy.OperationalError, alchemy.ArgumentError]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        kinds.append(psycopg.OperationalError)
    return isinstance(exc, tuple(kinds))


# Each module adds its own subcommand(s).
COMMAND_MODULES = [serve, migrate, gc, fsck, users, admin_cli]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lading", description="Lading container registry")
    parser.add_argument("--config", help="YAML settings file (also LADING_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Put each command's one-line help (shown in its parent's list) atop its own --help."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        listed = {choice.dest: choice.help for choice in action._choices_actions}
        for name, command in action.choices.items():
            summary = listed.get(name)
            if summary and summary not in (command.description or ""):
                more = command.description
                command.description = f"{summary}. {more}" if more else summary
            _describe(command)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
    except BrokenPipeError:
        # `lading usage | head`: the reader has all it wanted. Stop quietly, with the
        # status a shell gives a command killed by SIGPIPE; drop what is still buffered.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (SettingsError, StorageError) as exc:
        # Configuration and unreachable storage are the operator's to fix: no traceback.
        print(f"lading: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lading: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    except OSError as exc:
        # A data directory that cannot be created, a file that cannot be read, ...
        print(f"lading: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not database_trouble(exc):
            raise
        cause = getattr(exc, "orig", None) or exc
        print(f"lading: cannot use the database: {one_line(cause)}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
