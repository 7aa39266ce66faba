"""Part sizing, the 10,000-part limit and bounded concurrent transfers of the S3 driver.

The pipeline tests drive :class:`PartPipeline` and :class:`RangeReader` with a
real thread pool and real (slow) send/fetch functions; the driver tests run on
moto and rclone over HTTP.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from s3servers import TEST_PART_SIZE, S3Server, s3_driver_for

from storage.driver import ObjectTooLarge, StorageUnavailable
from storage.s3 import READ_CHUNK, S3Config, S3Driver
from storage.s3_parts import (
    MAX_PARTS,
    BufferPool,
    PartBody,
    PartPipeline,
    RangeReader,
    UploadTooLarge,
    max_blob_size,
)
from storage.s3_uploads import Part, UploadToken

MiB = 1024 * 1024
GiB = 1024 * MiB


class Gauge:
    """Counts calls running at once and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


# -- pipeline and read-ahead, without S3 ----------------------------------------
def test_pipeline_bounds_parts_in_flight(pool: ThreadPoolExecutor) -> None:
    gauge = Gauge()

    def send(number: int, body: bytes) -> str:
        with gauge:
            time.sleep(0.02 * (number % 3))  # finish out of order
            return f"etag-{number}-{len(body)}"

    pipeline = PartPipeline(pool, send, limit=3)
    for number in range(1, 13):
        pipeline.submit(number, bytes(number))
        assert gauge.now <= 3
    parts = pipeline.drain()
    assert gauge.peak == 3
    assert [p.number for p in parts] == list(range(1, 13))
    assert [p.etag for p in parts] == [f"etag-{n}-{n}" for n in range(1, 13)]
    assert [p.size for p in parts] == list(range(1, 13))


def test_pipeline_failure_waits_for_the_other_parts(pool: ThreadPoolExecutor) -> None:
    finished: list[int] = []

    def send(number: int, body: bytes) -> str:
        if number == 2:
            raise StorageUnavailable("part 2 failed")
        time.sleep(0.2)
        finished.append(number)
        return "etag"

    pipeline = PartPipeline(pool, send, limit=4)
    with pytest.raises(StorageUnavailable, match="part 2"):
        for number in range(1, 9):
            pipeline.submit(number, b"x")
        pipeline.drain()
    # Nothing the pipeline started still runs once the error is raised.
    settled = sorted(finished)
    time.sleep(0.3)
    assert sorted(finished) == settled


def test_range_reader_yields_in_order_with_bounded_read_ahead(pool: ThreadPoolExecutor) -> None:
    data = os.urandom(10_000)
    gauge = Gauge()

    def fetch(first: int, last: int) -> list[bytes]:
        with gauge:
            time.sleep(0.01 * (first % 3))
            return [data[first : last + 1]]

    reader = RangeReader(pool, fetch, 100, 9_950, range_size=700, limit=3, chunk=256)
    pieces = list(reader)
    assert b"".join(pieces) == data[100:9_950]
    assert max(len(p) for p in pieces) == 256
    assert gauge.peak <= 3


def test_range_reader_short_range_is_an_error(pool: ThreadPoolExecutor) -> None:
    reader = RangeReader(pool, lambda first, last: [b"sh", b"ort"], 0, 100, 50, 2, 1024)
    with pytest.raises(StorageUnavailable, match="5 bytes for a range of 50"):
        list(reader)


def test_part_body_rereads_after_seek() -> None:
    """botocore hashes the body, seeks back, sends it, and seeks to 0 to retry."""
    data = bytearray(os.urandom(3 * MiB + 7))
    body = PartBody(data)
    assert len(body) == len(data)
    assert bytes(body.read(1024 * 1024)) == data  # the whole rest, whatever is asked
    assert body.read(16384) == b""
    assert body.seek(0) == 0 and body.tell() == 0
    assert bytes(body.read()) == data
    body.seek(-7, 2)
    assert bytes(body.read(1)) == data[-7:]


def test_buffer_pool_reuses_and_bounds_idle_buffers() -> None:
    pool = BufferPool(1024, keep=2)
    taken = [pool.take() for _ in range(3)]
    for buffer in taken:
        pool.give(buffer)
    pool.give(bytearray(10))  # another size is never pooled
    again = [pool.take() for _ in range(3)]
    assert sum(any(b is t for t in taken) for b in again) == 2
    assert all(len(b) == 1024 for b in again)


def test_max_blob_size() -> None:
    assert MAX_PARTS == 10_000
    assert max_blob_size(8 * MiB) == 80_000 * MiB  # about 78 GiB
    assert max_blob_size(64 * MiB) == 625 * GiB


# -- the driver on real S3 servers ----------------------------------------------
def parts_of(state_token: str) -> list[list[object]]:
    parts: list[list[object]] = json.loads(state_token)["parts"]
    return parts


def test_concurrent_parts_are_equal_sized_and_in_order(server: S3Server, bucket: str) -> None:
    s3 = s3_driver_for(server, bucket, max_concurrency=3)
    data = os.urandom(7 * TEST_PART_SIZE + 12345)
    state = s3.start_upload("equal")
    # Odd write sizes across two writers, as two PATCH requests would send them.
    cut = 3 * TEST_PART_SIZE + 777
    for piece_range in ((0, cut), (cut, len(data))):
        writer = s3.resume_upload(state)
        for at in range(piece_range[0], piece_range[1], 3 * MiB + 1):
            writer.write(data[at : min(at + 3 * MiB + 1, piece_range[1])])
        state = writer.close()
    parts = parts_of(state.token)
    assert [p[0] for p in parts] == list(range(1, 8))
    assert {p[2] for p in parts} == {TEST_PART_SIZE}
    token = json.loads(state.token)
    assert token["tail_size"] == 12345
    # Once close() returned, S3 holds exactly the seven equal parts the state names.
    listed = server.client().list_parts(
        Bucket=bucket, Key=f"registry/v1/_blobs/{token['id']}", UploadId=token["mpu"]
    )["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [
        (n, TEST_PART_SIZE, etag) for n, etag, _size in parts
    ]
    stored = s3.commit_upload(state, "blobs/equal")
    assert s3.get(stored) == data
    s3.delete(stored)


def test_upload_keeps_its_part_size_when_the_setting_changes(server: S3Server, bucket: str) -> None:
    small = s3_driver_for(server, bucket)
    data = os.urandom(3 * TEST_PART_SIZE + 5)
    writer = small.resume_upload(small.start_upload("keep"))
    writer.write(data[: TEST_PART_SIZE + 1])
    state = writer.close()
    larger = s3_driver_for(server, bucket, part_size=2 * TEST_PART_SIZE)
    writer = larger.resume_upload(state)
    writer.write(data[TEST_PART_SIZE + 1 :])
    state = writer.close()
    assert {p[2] for p in parts_of(state.token)} == {TEST_PART_SIZE}
    stored = larger.commit_upload(state, "blobs/keep")
    assert larger.get(stored) == data
    larger.delete(stored)


def test_part_limit_is_a_clear_error(server: S3Server, bucket: str) -> None:
    """An upload one part short of 10,000 takes one more part, then refuses."""
    s3 = s3_driver_for(server, bucket)
    started = UploadToken.decode(s3.start_upload("limit"))
    # The recorded parts are never sent: the writer refuses before touching S3.
    parts = tuple(Part(n, "etag", TEST_PART_SIZE) for n in range(1, MAX_PARTS))
    near_limit = UploadToken("limit", "never-created", parts, started.tail, 0).state()
    writer = s3.resume_upload(near_limit)
    message = rf"10000 parts of {TEST_PART_SIZE} bytes \(at most {max_blob_size(TEST_PART_SIZE)}"
    with pytest.raises(UploadTooLarge, match=message) as raised:
        writer.write(bytes(TEST_PART_SIZE + 1))
    # The registry sees the contract's error, whatever the driver.
    assert isinstance(raised.value, ObjectTooLarge)
    writer.abandon()
    s3.abort_upload(near_limit)


def test_configured_part_limit_keeps_the_durable_state(server: S3Server, bucket: str) -> None:
    """With max_parts=2 the limit is two parts; the write that crosses it stores nothing."""
    s3 = s3_driver_for(server, bucket, max_parts=2)
    data = os.urandom(2 * TEST_PART_SIZE)
    writer = s3.resume_upload(s3.start_upload("two"))
    writer.write(data[: TEST_PART_SIZE + 5])
    state = writer.close()
    writer = s3.resume_upload(state)
    writer.write(data[TEST_PART_SIZE + 5 :])
    with pytest.raises(ObjectTooLarge, match=rf"2 parts of {TEST_PART_SIZE} bytes"):
        writer.write(b"x")
    writer.abandon()
    # The state of the last close still describes the upload, which commits intact.
    writer = s3.resume_upload(state)
    writer.write(data[TEST_PART_SIZE + 5 :])
    stored = s3.commit_upload(writer.close(final=True), "blobs/two")
    assert s3.get(stored) == data
    s3.delete(stored)


def test_abandon_waits_for_parts_in_flight(server: S3Server, bucket: str) -> None:
    """A stale writer's parts must not land after the next writer sent the same numbers."""
    s3 = s3_driver_for(server, bucket, max_concurrency=4)
    state = s3.start_upload("stale")
    stale = s3.resume_upload(state)
    stale.write(os.urandom(4 * TEST_PART_SIZE))
    stale.abandon()
    data = os.urandom(4 * TEST_PART_SIZE + 1)
    writer = s3.resume_upload(state)
    writer.write(data)
    stored = s3.commit_upload(writer.close(), "blobs/stale")
    assert s3.get(stored) == data
    s3.delete(stored)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_read_ahead_ranges(server: S3Server, bucket: str, concurrency: int) -> None:
    s3 = s3_driver_for(server, bucket, max_concurrency=concurrency)
    data = os.urandom(4 * TEST_PART_SIZE + 99)
    s3.put("obj", data)
    p = TEST_PART_SIZE
    cases = [(0, None), (1, None), (p - 1, 2), (p, p), (p + 3, 2 * p + 10), (3 * p, None)]
    cases += [(len(data) - 5, None), (7, len(data)), (len(data), None)]
    for offset, length in cases:
        end = None if length is None else offset + length
        chunks = list(s3.read("obj", offset, length))
        assert b"".join(chunks) == data[offset:end], (offset, length)
        assert all(len(c) <= READ_CHUNK for c in chunks)
    # A reader closed early stops its read-ahead; the object is intact.
    reader = s3.read("obj")
    assert next(reader) == data[:READ_CHUNK]
    reader.close()  # type: ignore[attr-defined]
    assert s3.get("obj") == data
    s3.delete("obj")


def test_config_bounds() -> None:
    with pytest.raises(ValueError, match="between 5 MiB and 5 GiB"):
        S3Config(bucket="b", part_size=5 * MiB - 1)
    with pytest.raises(ValueError, match="between 5 MiB and 5 GiB"):
        S3Config(bucket="b", part_size=5 * GiB + 1)
    assert S3Config(bucket="b", part_size=5 * GiB).part_size == 5 * GiB
    with pytest.raises(ValueError, match="max_concurrency"):
        S3Config(bucket="b", max_concurrency=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        S3Config(bucket="b", max_concurrency=65)
    with pytest.raises(ValueError, match="max parts must be between 1 and 10000"):
        S3Config(bucket="b", max_parts=10_001)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        S3Config(bucket="b", complete_timeout=0)
    S3Driver(S3Config(bucket="b", max_concurrency=64))
