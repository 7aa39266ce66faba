"""Operations endpoints: liveness, readiness and Prometheus metrics.

``lading serve`` runs several uvicorn worker processes; each keeps its own
counters. When ``PROMETHEUS_MULTIPROC_DIR`` is set (``lading serve`` sets it
to a fresh temporary directory when it starts more than one worker),
prometheus-client writes every value to memory-mapped files there and
``/metrics`` sums them over all workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
from anyio import to_thread
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from registry.db.engine import Database
from storage.driver import Driver, StorageFull

log = logging.getLogger("lading.ops")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READINESS_TIMEOUT_SECONDS = 5.0

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class Metrics:
    """Every metric Lading exports. One instance per app, built by the composition root.

    Metric names (stable; dashboards and alerts rely on them):

    - ``lading_http_requests_total{method,kind,status}``
    - ``lading_http_request_duration_seconds{method,kind}`` (histogram)
    - ``lading_http_request_bytes_total{kind}`` / ``lading_http_response_bytes_total{kind}``
    - ``lading_upload_requests_in_progress`` (PATCH/PUT bodies being received now)
    - ``lading_gc_runs_total{outcome}``, ``lading_gc_bytes_freed_total``,
      ``lading_gc_blobs_deleted_total``, ``lading_gc_manifests_deleted_total``

    ``kind`` is the route kind (blob, manifest, upload, tags, catalog, referrers,
    base, auth, admin, ops, other), never the raw path, so cardinality stays bounded.
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "lading_http_requests",
            "HTTP requests answered, by route kind and status.",
            ["method", "kind", "status"],
            registry=reg,
        )
        self.duration = Histogram(
            "lading_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["method", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.bytes_in = Counter(
            "lading_http_request_bytes", "Request body bytes received.", ["kind"], registry=reg
        )
        self.bytes_out = Counter(
            "lading_http_response_bytes", "Response body bytes sent.", ["kind"], registry=reg
        )
        self.uploads_in_progress = Gauge(
            "lading_upload_requests_in_progress",
            "Blob upload requests (PATCH/PUT) whose body is being received.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.gc_runs = Counter(
            "lading_gc_runs", "Garbage collection runs, by outcome.", ["outcome"], registry=reg
        )
        self.gc_bytes_freed = Counter(
            "lading_gc_bytes_freed", "Bytes of blob storage freed by GC.", registry=reg
        )
        self.gc_blobs_deleted = Counter(
            "lading_gc_blobs_deleted", "Blobs deleted by GC.", registry=reg
        )
        self.gc_manifests_deleted = Counter(
            "lading_gc_manifests_deleted", "Manifests deleted by GC.", registry=reg
        )
        for outcome in ("ok", "error"):
            self.gc_runs.labels(outcome)  # exported as 0 before the first run
        # labels() takes a lock and builds a tuple; cache the children per label set.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._byte_children: dict[str, tuple[Any, Any]] = {}

    @classmethod
    def from_environment(cls) -> Metrics:
        return cls(os.environ.get(MULTIPROC_ENV) or None)

    def observe_request(
        self, method: str, kind: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        key = (method, kind, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, kind, str(status)),
                self.duration.labels(method, kind),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if bytes_in or bytes_out:
            byte_children = self._byte_children.get(kind)
            if byte_children is None:
                byte_children = (self.bytes_in.labels(kind), self.bytes_out.labels(kind))
                self._byte_children[kind] = byte_children
            if bytes_in:
                byte_children[0].inc(bytes_in)
            if bytes_out:
                byte_children[1].inc(bytes_out)

    def record_gc_run(
        self,
        *,
        ok: bool = True,
        bytes_freed: int = 0,
        blobs_deleted: int = 0,
        manifests_deleted: int = 0,
    ) -> None:
        """Hook for the garbage collector: call once per run (or per batch)."""
        self.gc_runs.labels("ok" if ok else "error").inc()
        if bytes_freed:
            self.gc_bytes_freed.inc(bytes_freed)
        if blobs_deleted:
            self.gc_blobs_deleted.inc(blobs_deleted)
        if manifests_deleted:
            self.gc_manifests_deleted.inc(manifests_deleted)

    def exposition(self) -> bytes:
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def worker_exiting(self) -> None:
        """Drop this process's live gauges so a stopped worker stops counting."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def _check_database(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar_one()


async def _run_check(name: str, check: Callable[[], None]) -> str:
    try:
        with anyio.fail_after(READINESS_TIMEOUT_SECONDS):
            await to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        log.warning("readiness check %s timed out", name)
        return "timeout"
    except StorageFull as exc:
        # Pulls are still served; pushes get 507 until an operator frees space.
        log.warning("readiness check %s: %s", name, exc)
        return "full"
    except Exception as exc:
        log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


class OpsRoutes:
    """``/healthz`` (alive), ``/readyz`` (database and storage reachable), ``/metrics``."""

    def __init__(self, db: Database, driver: Driver, metrics: Metrics) -> None:
        self.db = db
        self.driver = driver
        self.metrics = metrics

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks = {
            "database": await _run_check("database", lambda: _check_database(self.db)),
            "storage": await _run_check("storage", self.driver.check),
        }
        ready = all(result in ("ok", "full") for result in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await to_thread.run_sync(self.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
