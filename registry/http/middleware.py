"""Per-request context: request id, metrics and an optional structured access log.

A pure ASGI middleware (no ``BaseHTTPMiddleware``): it neither buffers bodies
nor runs the app in another task, so streaming blobs and the request id
context variable behave exactly as without it. Its cost on a manifest GET is
a few microseconds (see docs/deployment.md for measurements).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.http.ops import Metrics
from registry.logging_setup import request_id_var

access_log = logging.getLogger("lading.access")

REQUEST_ID_HEADER: Final = b"x-request-id"
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Markers in /v2/ paths; the last one in the path decides (names may contain the words).
_V2_MARKERS: tuple[tuple[str, str], ...] = (
    ("/manifests/", "manifest"),
    ("/blobs/", "blob"),
    ("/tags/list", "tags"),
    ("/referrers/", "referrers"),
)


def route_kind(path: str) -> str:
    """Classify a path into a small, fixed set of route kinds (a metrics label)."""
    if path.startswith("/v2/"):
        if path == "/v2/":
            return "base"
        if path.startswith("/v2/_catalog"):
            return "catalog"
        best, best_at = "v2_other", -1
        for marker, kind in _V2_MARKERS:
            at = path.rfind(marker)
            if at > best_at:
                best, best_at = kind, at
        if best == "blob" and path.startswith("uploads", best_at + len("/blobs/")):
            return "upload"
        return best
    if path == "/v2":
        return "base"
    if path in _OPS_PATHS:
        return "ops"
    if path.startswith(("/token", "/auth", "/oauth")):
        return "auth"
    if path.startswith(("/admin", "/api/")):
        return "admin"
    return "other"


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's ``X-Request-ID`` when it is short and made of safe characters."""
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            if 0 < len(value) <= 128:
                text = value.decode("latin-1")
                if _ID_CHARS.issuperset(text):
                    return text
            return None
    return None


# Ids are a random per-process prefix plus a counter: unique across processes and
# replicas, and about ten times cheaper than reading the random source per request.
_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


class RequestContextMiddleware:
    """Request id (echoed as ``X-Request-ID``), metrics per route kind, access log."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log_enabled: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = incoming_request_id(scope["headers"]) or new_request_id()
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        path: str = scope["path"]
        kind = route_kind(path)
        method: str = scope["method"]
        if method not in _METHODS:
            method = "OTHER"
        status = 500
        bytes_in = 0
        bytes_out = 0

        async def receive_counting() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def send_tagged(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        uploading = kind == "upload" and method in ("PATCH", "PUT")
        if uploading:
            self.metrics.uploads_in_progress.inc()
        # Only requests that may carry a body pay for counting it.
        has_body = method in ("PUT", "PATCH", "POST")
        try:
            await self.app(scope, receive_counting if has_body else receive, send_tagged)
        finally:
            if uploading:
                self.metrics.uploads_in_progress.dec()
            elapsed = time.perf_counter() - start
            self.metrics.observe_request(method, kind, status, elapsed, bytes_in, bytes_out)
            if self.access_log_enabled:
                client = scope.get("client")
                access_log.info(
                    "%s %s %d",
                    method,
                    path,
                    status,
                    extra={
                        "method": method,
                        "path": path,
                        "kind": kind,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "bytes_in": bytes_in,
                        "bytes_out": bytes_out,
                        "client": client[0] if client else None,
                    },
                )
            request_id_var.reset(token)
