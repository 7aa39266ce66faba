"""The storage contract, run against every driver (see conftest ``driver``)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator

import pytest

from storage.driver import (
    Driver,
    InvalidKey,
    ObjectNotFound,
    UploadState,
    UploadStateInvalid,
)

MiB = 1024 * 1024
BAD_KEYS = ["../x", "a//b", "/abs", "a/./b", "", "a/../b", "x/..", "sp ace", "a/", "_uploads/x"]


def read_all(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def upload(driver: Driver, upload_id: str, pieces: list[bytes]) -> UploadState:
    state = driver.start_upload(upload_id)
    writer = driver.resume_upload(state)
    for piece in pieces:
        writer.write(piece)
    return writer.close()


def commit_and_read(driver: Driver, state: UploadState, key: str) -> tuple[str, bytes]:
    stored = driver.commit_upload(state, key)
    data = read_all(driver.read(stored))
    driver.delete(stored)
    return stored, data


# -- plain objects -------------------------------------------------------------
def test_put_get_stat_delete(driver: Driver) -> None:
    driver.put("a/b/c", b"hello")
    assert driver.get("a/b/c") == b"hello"
    assert driver.stat("a/b/c").size == 5
    assert driver.stat("a/b/c").key == "a/b/c"
    driver.put("a/b/c", b"replaced, longer")
    assert driver.get("a/b/c") == b"replaced, longer"
    driver.put("empty", b"")
    assert driver.get("empty") == b""
    assert driver.stat("empty").size == 0
    assert read_all(driver.read("empty")) == b""
    driver.delete("a/b/c")
    driver.delete("empty")
    with pytest.raises(ObjectNotFound):
        driver.get("a/b/c")


def test_missing_keys(driver: Driver) -> None:
    driver.put("dir/present", b"x")
    for key in ("absent", "dir/absent", "dir"):
        with pytest.raises(ObjectNotFound):
            driver.stat(key)
        with pytest.raises(ObjectNotFound):
            driver.get(key)
        with pytest.raises(ObjectNotFound):
            driver.read(key)  # raised before the first chunk is asked for
        with pytest.raises(ObjectNotFound):
            driver.read(key, 3, 5)
        with pytest.raises(ObjectNotFound):
            driver.delete(key)
    driver.delete("dir/present")


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_invalid_keys(driver: Driver, bad: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: driver.stat(bad),
        lambda: driver.get(bad),
        lambda: driver.read(bad),
        lambda: driver.put(bad, b"x"),
        lambda: driver.delete(bad),
        lambda: driver.redirect_url(bad, 60),
    ]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    state = driver.start_upload("inv")
    with pytest.raises(InvalidKey):
        driver.commit_upload(state, bad)
    driver.abort_upload(state)
    for bad_id in ("a/b", "..", ""):
        with pytest.raises(InvalidKey):
            driver.start_upload(bad_id)


def test_list(driver: Driver) -> None:
    keys = ["top", "a/one", "a/two", "a/sub/three", "ab/four"]
    for key in keys:
        driver.put(key, key.encode())
    state = upload(driver, "in-progress", [b"not listed"])
    assert sorted(driver.list("")) == sorted(keys)
    assert sorted(driver.list("a")) == ["a/one", "a/sub/three", "a/two"]
    assert sorted(driver.list("a/")) == ["a/one", "a/sub/three", "a/two"]
    assert sorted(driver.list("a/sub")) == ["a/sub/three"]
    assert list(driver.list("nothing")) == []
    assert list(driver.list("_uploads")) == []
    driver.abort_upload(state)
    for key in keys:
        driver.delete(key)
    assert list(driver.list("")) == []


def test_read_offsets_and_lengths(driver: Driver) -> None:
    data = os.urandom(3 * MiB + 123)
    driver.put("obj", data)
    cases = [
        (0, None),
        (0, 1),
        (1, 10),
        (MiB - 1, 2),
        (MiB + 5, None),
        (100, 2 * MiB),
        (len(data) - 1, None),
        (len(data) - 10, 100),
        (len(data), None),
        (len(data) + 50, None),
        (len(data) + 50, 10),
        (5, 0),
    ]
    for offset, length in cases:
        end = None if length is None else offset + length
        assert read_all(driver.read("obj", offset, length)) == data[offset:end], (offset, length)
    chunks = list(driver.read("obj"))
    assert all(len(c) <= 4 * MiB for c in chunks) and len(chunks) <= 8
    driver.delete("obj")


# -- uploads -----------------------------------------------------------------
def test_upload_chunk_sizes_across_writers(driver: Driver) -> None:
    """Writers of 1 byte, 100 KiB and 16 MiB chunks, each resuming the last state."""
    rounds = [[b"x"], [os.urandom(100 * 1024)] * 3, [os.urandom(16 * MiB)], [b"y"] * 7, [], [b"z"]]
    state = driver.start_upload("multi")
    expected = b""
    for pieces in rounds:
        writer = driver.resume_upload(state)
        for piece in pieces:
            writer.write(piece)
            expected += piece
        state = writer.close()
        assert state.size == len(expected)
    _, data = commit_and_read(driver, state, "blobs/multi")
    assert data == expected


def test_small_upload_read_back_and_commit(driver: Driver) -> None:
    state = upload(driver, "small", [b"abc", b"def"])
    assert state.size == 6
    assert read_all(driver.read_upload(state)) == b"abcdef"
    _, data = commit_and_read(driver, state, "blobs/small")
    assert data == b"abcdef"
    with pytest.raises(UploadStateInvalid):
        driver.resume_upload(state)


def test_zero_byte_upload(driver: Driver) -> None:
    state = driver.start_upload("zero")
    assert state.size == 0
    state = driver.resume_upload(state).close()
    assert state.size == 0
    assert read_all(driver.read_upload(state)) == b""
    stored = driver.commit_upload(state, "blobs/zero")
    assert driver.stat(stored).size == 0
    assert driver.get(stored) == b""
    assert read_all(driver.read(stored)) == b""
    driver.delete(stored)


@pytest.mark.parametrize("call_abandon", [True, False])
def test_abandoned_writer_is_discarded(driver: Driver, call_abandon: bool) -> None:
    first = os.urandom(3 * MiB)
    state = upload(driver, "abandon", [first])
    # Write past a part boundary so S3 drivers really upload a part, then walk away.
    stale = driver.resume_upload(state)
    stale.write(os.urandom(7 * MiB))
    stale.write(b"more")
    if call_abandon:
        stale.abandon()
    del stale
    second = os.urandom(6 * MiB + 17)
    writer = driver.resume_upload(state)
    writer.write(second)
    state = writer.close()
    assert state.size == len(first) + len(second)
    _, data = commit_and_read(driver, state, "blobs/abandon")
    assert hashlib.sha256(data).digest() == hashlib.sha256(first + second).digest()


@pytest.mark.parametrize("tail", [1000, 0], ids=["tail", "whole-parts"])
def test_unrecorded_close_keeps_the_previous_state(driver: Driver, tail: int) -> None:
    # The registry records a closed state after close; if that fails, the state it
    # resumed from is still on record and must resume, and commit, with every byte.
    first = os.urandom(5 * MiB + tail)
    recorded = upload(driver, "unrecorded", [first])
    lost = driver.resume_upload(recorded)
    lost.write(os.urandom(6 * MiB + 7))
    lost.close()  # never recorded
    second = os.urandom(MiB + 3)
    for _ in range(2):  # the retry's own state is not recorded either at first
        writer = driver.resume_upload(recorded)
        writer.write(second)
        state = writer.close()
    later = driver.resume_upload(state)  # the retry's state got recorded: go on from it
    later.write(b"end")
    state = later.close()
    _, data = commit_and_read(driver, state, "blobs/unrecorded")
    assert hashlib.sha256(data).digest() == hashlib.sha256(first + second + b"end").digest()


def test_commit_retried_after_it_took_effect(driver: Driver) -> None:
    # A commit whose answer was lost took effect; the registry, which kept the
    # session, commits the same state to the same key again.
    for name, size in (("retried-small", 1000), ("retried-large", 6 * MiB + 5)):
        data = os.urandom(size)
        state = upload(driver, name, [data])
        stored = driver.commit_upload(state, f"blobs/{name}")
        assert driver.commit_upload(state, f"blobs/{name}") == stored
        assert read_all(driver.read(stored)) == data
        driver.delete(stored)


def test_commit_over_existing_key(driver: Driver) -> None:
    driver.put("blobs/same", b"old contents")
    state = upload(driver, "over", [b"new"])
    stored = driver.commit_upload(state, "blobs/same")
    assert driver.get(stored) == b"new"
    for key in {stored, "blobs/same"}:
        driver.delete(key)


def test_abort(driver: Driver) -> None:
    state = upload(driver, "gone", [os.urandom(6 * MiB)])
    driver.abort_upload(state)
    with pytest.raises(UploadStateInvalid):
        driver.resume_upload(state)
    with pytest.raises(UploadStateInvalid):
        driver.commit_upload(state, "blobs/gone")
    driver.abort_upload(state)  # a second abort is a no-op
    assert [u for u, _ in driver.list_uploads()] == []


@pytest.mark.parametrize("size", [0, 10 * MiB])
def test_aborted_upload_cannot_be_continued(driver: Driver, size: int) -> None:
    # 0 and 10 MiB (two whole 5 MiB parts) leave no tail bytes: S3 checks such
    # an upload's existence in the background, so resume may not raise yet,
    # but nothing may be stored and writing or closing must then raise.
    state = upload(driver, "gone-aligned", [os.urandom(size)])
    driver.abort_upload(state)
    for piece in (b"", os.urandom(6 * MiB)):
        with pytest.raises(UploadStateInvalid):
            writer = driver.resume_upload(state)
            try:
                writer.write(piece)
                writer.close()
            finally:
                writer.abandon()
    assert list(driver.list_uploads()) == []


def test_list_uploads(driver: Driver) -> None:
    small = upload(driver, "u-small", [b"1234"])
    big = upload(driver, "u-big", [os.urandom(6 * MiB)])
    found = dict(driver.list_uploads())
    assert sorted(found) == ["u-big", "u-small"]
    # The listed state must be good enough to abort an orphan.
    driver.abort_upload(found["u-big"])
    _, data = commit_and_read(driver, small, "blobs/u-small")
    assert data == b"1234"
    assert list(driver.list_uploads()) == []
    del big


def test_start_upload_twice(driver: Driver) -> None:
    state = driver.start_upload("twice")
    with pytest.raises(UploadStateInvalid):
        driver.start_upload("twice")
    driver.abort_upload(state)


def test_malformed_state(driver: Driver) -> None:
    with pytest.raises(UploadStateInvalid):
        driver.resume_upload(UploadState(token="not json", size=0))
    with pytest.raises(UploadStateInvalid):
        driver.resume_upload(UploadState(token='{"id": "../../etc"}', size=0))


# -- concurrency ---------------------------------------------------------------
def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def driver_id(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["driver"])


def test_concurrent_puts_same_key(driver: Driver, request: pytest.FixtureRequest) -> None:
    if driver_id(request) == "s3-rclone":
        # Measured under load: after eight concurrent PUTs of one key rclone can
        # answer 404 to a HEAD, cut a GET short, or keep listing the key after a
        # successful DELETE while its file is gone from disk (a stale directory
        # cache; --dir-cache-time 0s makes rclone hang instead). A server bug, not
        # the driver's; Lading itself commits each upload under its own key.
        pytest.skip("rclone serve s3 loses track of a key written concurrently")
    values = [bytes([i]) * (256 * 1024 + i) for i in range(8)]
    seen: list[bytes] = []

    def worker(i: int) -> None:
        for _ in range(3):
            driver.put("shared/key", values[i])
            seen.append(driver.get("shared/key"))

    try:
        run_threads(8, worker)
        assert all(v in values for v in seen), "a reader saw a partial object"
        assert driver.get("shared/key") in values
    finally:
        driver.delete("shared/key")


def test_concurrent_uploads_different_keys(driver: Driver) -> None:
    contents = [os.urandom(5 * MiB + 1000 * i + 1) for i in range(4)]
    stored: dict[int, str] = {}

    def worker(i: int) -> None:
        state = driver.start_upload(f"par-{i}")
        for piece in (contents[i][: 2 * MiB], contents[i][2 * MiB :]):
            writer = driver.resume_upload(state)
            writer.write(piece)
            state = writer.close()
        stored[i] = driver.commit_upload(state, f"blobs/par-{i}")
        # Deleting neighbours while others write must not disturb them.
        driver.put(f"blobs/tmp-{i}", b"t")
        driver.delete(f"blobs/tmp-{i}")

    run_threads(4, worker)
    for i, key in stored.items():
        assert driver.get(key) == contents[i]
        driver.delete(key)


def test_concurrent_uploads_same_key(driver: Driver) -> None:
    contents = [os.urandom(64 * 1024) + bytes([i]) for i in range(6)]
    stored: dict[int, str] = {}

    def worker(i: int) -> None:
        state = upload(driver, f"same-{i}", [contents[i]])
        stored[i] = driver.commit_upload(state, "blobs/same-target")

    run_threads(6, worker)
    assert driver.get("blobs/same-target") in contents
    for key in set(stored.values()):
        driver.delete(key)


def test_concurrent_put_and_delete_in_one_directory(
    driver: Driver, request: pytest.FixtureRequest
) -> None:
    """Deleting the last key of a directory races with a write into it."""
    if driver_id(request) == "s3-rclone":
        pytest.skip(
            "rclone serve s3 loses operations here (HEAD 404 after a successful PUT, "
            "object still present after a successful DELETE): a server bug, not the driver's"
        )

    def worker(i: int) -> None:
        for round_ in range(40):
            key = f"race/{round_ % 2}/k{i}"
            driver.put(key, b"v")
            driver.delete(key)

    run_threads(4, worker)
    assert list(driver.list("race")) == []


# -- large streamed upload ---------------------------------------------------------
def odd_chunks(total: int) -> Iterator[bytes]:
    """``total`` pseudo-random bytes in odd-sized chunks, never all in memory."""
    pool = os.urandom(4 * MiB)
    pool += pool
    sizes = [1, 100 * 1024 + 7, 16 * MiB + 3, 3 * MiB - 1, 777_777, 5 * MiB]
    sent = 0
    i = 0
    while sent < total:
        size = min(sizes[i % len(sizes)], total - sent)
        start = (i * 524_287) % (4 * MiB)
        while size > 0:
            piece = min(size, 4 * MiB)
            yield pool[start : start + piece]
            sent += piece
            size -= piece
        i += 1


@pytest.mark.slow
def test_streamed_upload_256mib(driver: Driver) -> None:
    total = 256 * MiB
    expected = hashlib.sha256()
    state = driver.start_upload("big")
    writer = driver.resume_upload(state)
    written = 0
    for chunk in odd_chunks(total):
        writer.write(chunk)
        expected.update(chunk)
        written += len(chunk)
        # Hand over to a fresh writer now and then, as separate PATCH requests would.
        handovers = written // (100 * MiB)
        if handovers > state.size // (100 * MiB) and written < total:
            state = writer.close()
            assert state.size == written
            writer = driver.resume_upload(state)
    state = writer.close()
    assert state.size == total
    stored = driver.commit_upload(state, "blobs/big")
    assert driver.stat(stored).size == total
    actual = hashlib.sha256()
    for chunk in driver.read(stored):
        assert len(chunk) <= 4 * MiB
        actual.update(chunk)
    assert actual.hexdigest() == expected.hexdigest()
    tail = read_all(driver.read(stored, total - 10))
    assert len(tail) == 10
    driver.delete(stored)
