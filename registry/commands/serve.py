"""`lading serve`: run the registry under uvicorn."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from registry.commands.common import export_settings, settings_from_args, worker_count

log = logging.getLogger("lading")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.app import build_components, create_app, prepare

    settings = settings_from_args(
        args, host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers
    )
    components = build_components(settings)
    prepare(components)
    components.db.dispose()
    workers = worker_count(settings)
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
    export_settings(settings)
    uvicorn.run("registry.app:app_from_environment", factory=True, workers=workers, **common)
    return 0


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 5000)")
    serve.add_argument("--data-dir", default=None, help="data directory (default ./data)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (0 = CPUs)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)
