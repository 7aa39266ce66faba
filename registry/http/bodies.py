"""Streaming request bodies into uploads without holding them in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from anyio import CancelScope, to_thread
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
# Buffers received ahead of the one being written: 4 MiB more memory per upload.
WRITES_AHEAD = 4


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


class _WritesAhead:
    """Writes buffers in order on a worker thread while the next ones arrive.

    Waiting for each write before receiving on left the event loop idle about a
    third of a 1 GiB push (uvicorn stops reading the socket past 64 KiB unread).
    After a failed write the rest are dropped, and the next ``put`` raises it.
    """

    def __init__(self, appender: Appender) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=WRITES_AHEAD)
        self._error: Exception | None = None
        self._task = asyncio.ensure_future(self._drain(appender))

    async def _drain(self, appender: Appender) -> None:
        while (data := await self._queue.get()) is not None:
            if self._error is None:
                try:
                    await to_thread.run_sync(appender.write, data)
                except Exception as exc:  # raised to the receiving side by put/finish
                    self._error = exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    async def put(self, data: bytes) -> None:
        self._raise_failure()
        await self._queue.put(data)

    async def finish(self) -> None:
        """Wait until every buffer is written; raise a failed write's error."""
        await self._queue.put(None)
        await self._task
        self._raise_failure()

    async def stop(self) -> None:
        """Drop unwritten buffers and wait for the write in flight, so that the
        caller may abandon the appender."""
        if self._task.done():
            return
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        # Shielded: a request cancelled at shutdown must not close the writer under a write.
        with CancelScope(shield=True):
            await asyncio.wait({self._task})


async def pump_into(request: Request, appender: Appender, expected: int | None) -> int:
    """Append the whole body; hashing and writing overlap receiving.

    Raises SIZE_INVALID when the body length differs from ``expected``. On
    any failure the caller must abandon the appender.
    """
    writes = _WritesAhead(appender)
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
                await writes.put(b"".join(parts))
                parts.clear()
                buffered = 0
        if parts:
            await writes.put(b"".join(parts))
        await writes.finish()
    finally:
        await writes.stop()
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
