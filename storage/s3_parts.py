"""Part sizing and bounded concurrent transfers for the S3 driver.

Parts of one upload all have the same size (the last one may be shorter):
Cloudflare R2 refuses anything else, and it makes the largest blob a plain
product, ``part_size * MAX_PARTS``. An upload keeps the part size it started
with, even if the configured size changes before it ends.

Both directions keep at most ``limit`` transfers of one request in flight, so
a request holds about ``limit + 1`` parts (or read ranges) in memory whatever
the blob size.

Part bytes are filled into reused buffers and handed to botocore as views
(:class:`PartBody`): fresh memory costs a page fault per 4 KiB, which on this
project's VMs was about ten times the copy itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass

from storage.driver import ObjectTooLarge, StorageUnavailable

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3's limits: parts other than the last are 5 MiB to 5 GiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000


class UploadTooLarge(ObjectTooLarge):
    """The upload would need more than the allowed number of parts of its part size."""


def max_blob_size(part_size: int, max_parts: int = MAX_PARTS) -> int:
    """Largest blob an upload with ``max_parts`` parts of ``part_size`` can hold."""
    return part_size * max_parts


def check_max_parts(max_parts: int) -> int:
    if not 1 <= max_parts <= MAX_PARTS:
        raise ValueError(f"S3 max parts must be between 1 and {MAX_PARTS}, not {max_parts}")
    return max_parts


def check_part_size(part_size: int) -> int:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(
            f"S3 part size must be between 5 MiB and 5 GiB ({MIN_PART_SIZE}..{MAX_PART_SIZE} "
            f"bytes), not {part_size}"
        )
    return part_size


class BufferPool:
    """Part buffers of one size, reused; at most ``keep`` wait idle between requests."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._idle: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        """Return a buffer nothing refers to any more (others are dropped)."""
        if len(buffer) != self.size:
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(buffer)


class PartBody:
    """A part for botocore's ``Body``: a seekable reader over a buffer, without copies.

    botocore wraps ``bytes`` in ``BytesIO``, then copies every 1 MiB it hashes
    for the SigV4 payload and every 16 KiB urllib3 sends (a syscall each).
    ``read`` here returns a view of the whole rest, whatever size is asked:
    both consumers (``iter(read, b"")`` for the hash, urllib3's send loop)
    take chunks of any length, and the part then goes out in one ``sendall``.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> memoryview | bytes:
        if self._pos >= len(self._view):
            return b""
        out = self._view[self._pos :]
        self._pos = len(self._view)
        return out

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = min(max(base + offset, 0), len(self._view))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int


class PartPipeline:
    """Sends the parts of one writer with at most ``limit`` in flight.

    ``send(number, body)`` uploads one part and returns its ETag. A part is
    only recorded once S3 confirmed it; :meth:`drain` waits for every part,
    so the caller acknowledges bytes only when they are in S3. After any
    failure the pipeline first waits for its other parts, so nothing it
    started still runs when the error reaches the caller (a later writer
    resuming the same upload must not race a stale part).
    """

    def __init__(
        self, executor: Executor, send: Callable[[int, bytearray], str], limit: int
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._executor = executor
        self._send = send
        self._limit = limit
        self._inflight: dict[Future[str], tuple[int, int]] = {}
        self._done: list[Part] = []

    def submit(self, number: int, body: bytearray) -> None:
        while len(self._inflight) >= self._limit:
            finished, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
            self._collect(finished)
        future = self._executor.submit(self._send, number, body)
        self._inflight[future] = (number, len(body))

    def _collect(self, finished: set[Future[str]]) -> None:
        error: BaseException | None = None
        for future in finished:
            number, size = self._inflight.pop(future)
            exc = future.exception()
            if exc is None:
                self._done.append(Part(number, future.result(), size))
            elif error is None:
                error = exc
        if error is not None:
            self.cancel()
            raise error

    def drain(self) -> list[Part]:
        """Wait for every part; return all confirmed parts in number order."""
        if self._inflight:
            finished, _ = wait(self._inflight)
            self._collect(finished)
        return sorted(self._done, key=lambda p: p.number)

    def cancel(self, *, drop_queued: bool = True) -> None:
        """Wait for the parts in flight (dropping those not yet started); ignore errors."""
        if drop_queued:
            for future in self._inflight:
                future.cancel()
        wait(self._inflight)
        self._inflight.clear()


class RangeReader:
    """Reads ``[start, end)`` of an object as ranged GETs, ``limit`` ahead, in order.

    ``fetch(first, last)`` returns the bytes of the inclusive range as a list of
    pieces, best read at most ``chunk`` bytes each: they are yielded as they are
    (a larger piece is cut, which copies). Call :meth:`prefetch` early to start
    the first GETs before iterating.
    """

    def __init__(
        self,
        executor: Executor,
        fetch: Callable[[int, int], list[bytes]],
        start: int,
        end: int,
        range_size: int,
        limit: int,
        chunk: int,
    ) -> None:
        self._executor = executor
        self._fetch = fetch
        self._ranges = iter(range(start, end, range_size))
        self._end = end
        self._range_size = range_size
        self._limit = limit
        self._chunk = chunk
        self._pending: deque[tuple[int, Future[list[bytes]]]] = deque()

    def prefetch(self) -> None:
        while len(self._pending) < self._limit:
            first = next(self._ranges, None)
            if first is None:
                return
            last = min(first + self._range_size, self._end) - 1
            future = self._executor.submit(self._fetch, first, last)
            self._pending.append((last - first + 1, future))

    def __iter__(self) -> Iterator[bytes]:
        try:
            self.prefetch()
            while self._pending:
                expected, future = self._pending.popleft()
                pieces = future.result()
                self.prefetch()
                got = sum(len(p) for p in pieces)
                if got != expected:
                    raise StorageUnavailable(f"S3 returned {got} bytes for a range of {expected}")
                for piece in pieces:
                    if len(piece) <= self._chunk:
                        yield piece
                        continue
                    for at in range(0, len(piece), self._chunk):
                        yield piece[at : at + self._chunk]
        finally:
            self.close()

    def close(self) -> None:
        """Drop ranges not yet started; running ones finish and are discarded."""
        for _size, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._ranges = iter(())
