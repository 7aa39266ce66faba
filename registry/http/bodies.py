"""Streaming request bodies into uploads without holding them in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from anyio import to_thread
from starlette.requests import ClientDisconnect, Request

from registry.domain.errors import (
    MANIFEST_TOO_LARGE,
    REQUEST_INVALID,
    SIZE_INVALID,
    ErrorCode,
    RegistryError,
)
from registry.services.uploads import Appender

# Big enough that thread hops are rare; small enough that little work is left
# once the last byte arrives (a 16 MiB PATCH answers ~2x sooner than with 4 MiB).
WRITE_BUFFER = 1024 * 1024
# Bodies up to this size are read whole and written in one thread hand-off.
SMALL_BODY = 4 * 1024 * 1024


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise RegistryError(SIZE_INVALID, "invalid Content-Length")
    return int(value)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise RegistryError(
            ErrorCode(REQUEST_INVALID.code, "client disconnected", 400), "client disconnected"
        ) from exc


async def pump_into(request: Request, appender: Appender, expected: int | None) -> int:
    """Append the whole body; hashing and writing of one buffer overlap receiving the next.

    Raises SIZE_INVALID when the body length differs from ``expected``. On
    any failure the caller must abandon the appender.
    """
    pending: asyncio.Future[None] | None = None
    parts: list[bytes] = []
    buffered = 0
    received = 0
    try:
        async for chunk in _chunks(request):
            parts.append(chunk)
            buffered += len(chunk)
            received += len(chunk)
            if expected is not None and received > expected:
                raise RegistryError(SIZE_INVALID, "body is longer than Content-Length")
            if buffered >= WRITE_BUFFER:
                data = b"".join(parts)
                parts.clear()
                buffered = 0
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(to_thread.run_sync(appender.write, data))
        if pending is not None:
            await pending
            pending = None
        if parts:
            await to_thread.run_sync(appender.write, b"".join(parts))
    finally:
        if pending is not None:
            # Let the in-flight write finish before the caller abandons the writer.
            await asyncio.gather(pending, return_exceptions=True)
    if expected is not None and received != expected:
        raise RegistryError(
            SIZE_INVALID,
            f"received {received} bytes but Content-Length was {expected}",
        )
    return received


async def read_exact(request: Request, expected: int) -> bytes:
    """Read a small body of a known length; SIZE_INVALID if it is longer or shorter."""
    parts: list[bytes] = []
    size = 0
    async for chunk in _chunks(request):
        size += len(chunk)
        if size > expected:
            raise RegistryError(SIZE_INVALID, "body is longer than Content-Length")
        parts.append(chunk)
    if size != expected:
        raise RegistryError(
            SIZE_INVALID, f"received {size} bytes but Content-Length was {expected}"
        )
    return b"".join(parts)


async def read_limited(request: Request, limit: int) -> bytes:
    """Read a small body (a manifest); 413 as soon as it exceeds ``limit``."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise RegistryError(MANIFEST_TOO_LARGE, detail={"max": limit})
    parts: list[bytes] = []
    size = 0
    async for chunk in _chunks(request):
        size += len(chunk)
        if size > limit:
            raise RegistryError(MANIFEST_TOO_LARGE, detail={"max": limit})
        parts.append(chunk)
    data = b"".join(parts)
    if declared is not None and len(data) != declared:
        raise RegistryError(SIZE_INVALID, "body length differs from Content-Length")
    return data
