"""Part sizing and bounded concurrent transfers for the S3 driver.

Parts of one upload all have the same size (the last one may be shorter):
Cloudflare R2 refuses anything else, and it makes the largest blob a plain
product, ``part_size * MAX_PARTS``. An upload keeps the part size it started
with, even if the configured size changes before it ends.

Both directions keep at most ``limit`` transfers of one request in flight, so
a request holds about ``limit + 1`` parts (or read ranges) in memory whatever
the blob size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass

from storage.driver import StorageError, StorageUnavailable

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3's limits: parts other than the last are 5 MiB to 5 GiB, at most 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000


class UploadTooLarge(StorageError):
    """The upload would need more than ``MAX_PARTS`` parts of its part size."""


def max_blob_size(part_size: int) -> int:
    """Largest blob an upload with ``part_size`` parts can hold."""
    return part_size * MAX_PARTS


def check_part_size(part_size: int) -> int:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(
            f"S3 part size must be between 5 MiB and 5 GiB ({MIN_PART_SIZE}..{MAX_PART_SIZE} "
            f"bytes), not {part_size}"
        )
    return part_size


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

    def __init__(self, executor: Executor, send: Callable[[int, bytes], str], limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._executor = executor
        self._send = send
        self._limit = limit
        self._inflight: dict[Future[str], tuple[int, int]] = {}
        self._done: list[Part] = []

    def submit(self, number: int, body: bytes) -> None:
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

    ``fetch(first, last)`` returns the bytes of the inclusive range; each range
    is yielded in pieces of at most ``chunk`` bytes. Call :meth:`prefetch`
    early to start the first GETs before iterating.
    """

    def __init__(
        self,
        executor: Executor,
        fetch: Callable[[int, int], bytes],
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
        self._pending: deque[tuple[int, Future[bytes]]] = deque()

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
                data = future.result()
                self.prefetch()
                if len(data) != expected:
                    raise StorageUnavailable(
                        f"S3 returned {len(data)} bytes for a range of {expected}"
                    )
                for at in range(0, len(data), self._chunk):
                    yield data[at : at + self._chunk]
        finally:
            self.close()

    def close(self) -> None:
        """Drop ranges not yet started; running ones finish and are discarded."""
        for _size, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._ranges = iter(())
