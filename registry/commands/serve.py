"""`lading serve`: run the registry under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import shutil
import tempfile
from typing import Any

from registry.commands.common import (
    add_local_options,
    export_settings,
    settings_from_args,
    worker_count,
)
from registry.logging_setup import configure_logging, logging_config

log = logging.getLogger("lading")
# glibc's mallopt parameter for the number of heap arenas (malloc.h).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry.app import build_components, create_app, prepare

    _limit_malloc_arenas()

    settings = settings_from_args(
        args,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        workers=args.workers,
        access_log=True if args.access_log else None,
    )
    configure_logging(settings.log_format, settings.log_level)
    workers = worker_count(settings)
    multiproc_dir = _prepare_metrics_dir(workers)
    components = build_components(settings)
    prepare(components)
    if settings.auth_mode == "none" and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "authentication is off and Lading listens on %s: anyone who can reach it may "
            "push, pull and delete. Set LADING_AUTH_MODE=token for a private registry.",
            settings.host,
        )
    components.db.dispose()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": logging_config(settings.log_format, settings.log_level),
        # lading.access (RequestContextMiddleware) logs requests, with the request id.
        "access_log": False,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_keep_alive": 75,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "server_header": False,
        # Multi-worker mode: uvicorn replaces a worker that does not answer its
        # supervisor within this many seconds; the default (5) killed workers that
        # were merely slow to import or busy on a loaded host.
        "timeout_worker_healthcheck": 30,
    }
    log.info(
        "Lading listening on http://%s:%d with %d worker(s)", settings.host, settings.port, workers
    )
    try:
        if workers == 1:
            uvicorn.run(create_app(settings, prepared=True), **common)
            return 0
        export_settings(settings)
        uvicorn.run("registry.app:app_from_environment", factory=True, workers=workers, **common)
        return 0
    finally:
        if multiproc_dir is not None:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


def _limit_malloc_arenas() -> None:
    """Cap glibc's heap arenas unless the operator set ``MALLOC_ARENA_MAX``.

    glibc gives threads that allocate at once their own arenas (up to eight per core),
    and each arena keeps the large buffers freed in it, such as the 8 MiB S3 ranges that
    the transfer threads read. Over a 1 GiB transfer on S3 that added 26-44 MiB of RSS
    that a 64 MiB one did not; with two arenas it added about 23 MiB, no slower.
    Worker processes read the variable when they start; this process is told directly.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    os.environ["MALLOC_ARENA_MAX"] = str(MALLOC_ARENAS)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def _prepare_metrics_dir(workers: int) -> str | None:
    """Give prometheus-client a fresh shared directory when several workers serve.

    Must run before any worker imports prometheus_client; workers inherit it.
    Returns the directory to remove at exit, or None when we did not create one.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        # Operator-provided: start from an empty directory, as prometheus-client requires.
        os.makedirs(configured, exist_ok=True)
        for entry in os.listdir(configured):
            if entry.endswith(".db"):
                os.unlink(os.path.join(configured, entry))
        return None
    if workers <= 1:
        return None
    created = tempfile.mkdtemp(prefix="lading-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    return created


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 5000)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (0 = CPUs)")
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (also LADING_ACCESS_LOG)"
    )
    add_local_options(serve)
    serve.set_defaults(func=cmd_serve)
