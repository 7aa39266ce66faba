"""The ``lading`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from registry.settings import ENV_PREFIX, Settings, SettingsError, load_settings

log = logging.getLogger("lading")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(getattr(args, "config", None), overrides)


def _worker_count(settings: Settings) -> int:
    return settings.workers or max(os.cpu_count() or 1, 1)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.app import build_components, create_app, prepare

    settings = _settings(
        args, host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers
    )
    components = build_components(settings)
    prepare(components)
    components.db.dispose()
    workers = _worker_count(settings)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": args.access_log,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_keep_alive": 75,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    log.info(
        "Lading listening on http://%s:%d with %d worker(s)", settings.host, settings.port, workers
    )
    if workers == 1:
        uvicorn.run(create_app(settings, prepared=True), **common)
        return 0
    # Workers rebuild the same settings from the environment.
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    os.environ.pop(f"{ENV_PREFIX}CONFIG", None)
    uvicorn.run("registry.app:app_from_environment", factory=True, workers=workers, **common)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from registry.db import migrate
    from registry.db.engine import Database

    settings = _settings(args, data_dir=args.data_dir)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lading", description="Lading container registry")
    parser.add_argument("--config", help="YAML settings file (also LADING_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 5000)")
    serve.add_argument("--data-dir", default=None, help="data directory (default ./data)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (0 = CPUs)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="database schema migrations")
    mig.add_argument("action", choices=["upgrade", "downgrade", "current"])
    mig.add_argument("revision", nargs="?", help="target revision (default head / -1)")
    mig.add_argument("--data-dir", default=None)
    mig.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    mig.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"lading: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
