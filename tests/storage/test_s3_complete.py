"""CompleteMultipartUpload that takes long, or whose answer is lost (moto and rclone).

A proxy between the driver and the real server holds the completion call
(``delay_proxy``); the driver's ordinary read timeout is 1 s, so only the
completion's own timeout (``complete_timeout``, setting ``s3_complete_timeout``)
can let a slow completion succeed.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from delay_proxy import DelayProxy
from s3servers import TEST_PART_SIZE, S3Server, s3_driver_for

from storage.driver import ObjectNotFound, StorageUnavailable, UploadState, UploadStateInvalid
from storage.s3 import S3Driver

DELAY = 2.5  # seconds the proxy holds a completion


def _driver(server: S3Server, bucket: str, proxy: DelayProxy, **config: object) -> S3Driver:
    return s3_driver_for(
        server, bucket, endpoint_url=proxy.endpoint_url, read_timeout=1.0, **config
    )


def _two_part_upload(s3: S3Driver, upload_id: str, data: bytes) -> UploadState:
    writer = s3.resume_upload(s3.start_upload(upload_id))
    writer.write(data)
    return writer.close(final=True)


def test_slow_completion_is_awaited(server: S3Server, bucket: str) -> None:
    proxy = DelayProxy(server.endpoint_url, delay=DELAY, hold="request")
    try:
        s3 = _driver(server, bucket, proxy, complete_timeout=DELAY + 10, max_retries=0)
        data = os.urandom(TEST_PART_SIZE + 10)
        state = _two_part_upload(s3, "slow", data)
        started = time.monotonic()
        stored = s3.commit_upload(state, "blobs/slow")
        assert time.monotonic() - started >= DELAY
        assert proxy.completions == 1
        assert s3.get(stored) == data
        s3.delete(stored)
    finally:
        proxy.close()


def test_completion_longer_than_its_timeout_fails_clearly(server: S3Server, bucket: str) -> None:
    """The same slow completion with a 1 s complete_timeout: the timeout is what waits."""
    proxy = DelayProxy(server.endpoint_url, delay=DELAY, hold="request")
    try:
        s3 = _driver(server, bucket, proxy, complete_timeout=1.0, max_retries=0)
        state = _two_part_upload(s3, "short", os.urandom(TEST_PART_SIZE + 10))
        with pytest.raises(StorageUnavailable, match="timed out on complete upload short"):
            s3.commit_upload(state, "blobs/short")
    finally:
        proxy.close()  # cuts the held request too: it never reaches the server
    direct = s3_driver_for(server, bucket)
    direct.abort_upload(state)
    with contextlib.suppress(ObjectNotFound):
        direct.delete("_blobs/short")  # had the held request got through after all


@pytest.mark.parametrize("retries", [0, 2])
def test_lost_completion_answer_is_confirmed(server: S3Server, bucket: str, retries: int) -> None:
    """The server completed, the answer never came: a retry finds the upload gone, or
    no retry is allowed; either way the object under the upload's key confirms it."""
    proxy = DelayProxy(server.endpoint_url, delay=DELAY, hold="response", times=1)
    try:
        s3 = _driver(server, bucket, proxy, complete_timeout=1.0, max_retries=retries)
        data = os.urandom(2 * TEST_PART_SIZE + 3)
        state = _two_part_upload(s3, f"lost{retries}", data)
        stored = s3.commit_upload(state, f"blobs/lost{retries}")
        assert proxy.completions == (2 if retries else 1)
        assert s3.get(stored) == data
        s3.delete(stored)
    finally:
        proxy.close()


def _replace_with_parts(server: S3Server, bucket: str, key: str, parts: list[bytes]) -> None:
    client = server.client()
    mpu = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [
        {"PartNumber": n, "ETag": client.upload_part(
            Bucket=bucket, Key=key, UploadId=mpu, PartNumber=n, Body=body
        )["ETag"]}
        for n, body in enumerate(parts, 1)
    ]  # fmt: skip
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=mpu, MultipartUpload={"Parts": done}
    )


def test_retried_commit_checks_the_completed_object(server: S3Server, bucket: str) -> None:
    """A commit retried after one that took effect (its tail and upload are gone)
    accepts the object it completed, and refuses another of the same size: by the
    ETag where the server's names the parts' MD5s (moto), by reading the object and
    comparing each part's MD5 where it is the MD5 of the whole object (rclone)."""
    s3 = s3_driver_for(server, bucket)
    data = os.urandom(2 * TEST_PART_SIZE + 3)
    state = _two_part_upload(s3, "retried", data)
    stored = s3.commit_upload(state, "blobs/retried")
    assert s3.commit_upload(state, "blobs/retried") == stored
    assert s3.get(stored) == data

    other = bytes(b ^ 0xFF for b in data)
    _replace_with_parts(
        server,
        bucket,
        f"registry/v1/{stored}",
        [other[:TEST_PART_SIZE], other[TEST_PART_SIZE : 2 * TEST_PART_SIZE], other[-3:]],
    )
    etag = server.client().head_object(Bucket=bucket, Key=f"registry/v1/{stored}")["ETag"]
    if server.name == "moto":
        assert etag.strip('"').endswith("-3")
    else:
        assert "-" not in etag  # the MD5 of the object: its bytes are read instead
    with pytest.raises(UploadStateInvalid):
        s3.commit_upload(state, "blobs/retried")
    s3.delete(stored)


def test_retried_commit_with_another_final_chunk_is_refused(server: S3Server, bucket: str) -> None:
    """A final chunk's completion took effect, but its answer was lost and the check
    after it failed too; the session is back at its recorded state and the client
    retries with another final chunk of the same length (and the digest of those
    bytes). The object under the upload's key holds the first chunk, so the retry
    must not pass it for its own bytes: that would be a blob not matching its digest.
    Retrying with the first chunk's bytes is accepted: they are what S3 holds."""
    s3 = s3_driver_for(server, bucket)
    writer = s3.resume_upload(s3.start_upload("changed"))
    writer.write(recorded := os.urandom(TEST_PART_SIZE + 5))
    state = writer.close()
    first, second = b"first!!", b"second!"

    proxy = DelayProxy(server.endpoint_url, delay=DELAY, hold="response", times=1, then_cut=True)
    try:
        cut_off = _driver(server, bucket, proxy, complete_timeout=1.0, max_retries=0)
        writer = cut_off.resume_upload(state)
        writer.write(first)
        with pytest.raises(StorageUnavailable):
            cut_off.commit_upload(writer.close(final=True), "blobs/changed")
    finally:
        proxy.close()
    assert s3.stat("_blobs/changed").size == len(recorded) + len(first)  # it took effect

    writer = s3.resume_upload(state)
    writer.write(second)
    # moto answers 500 (not NoSuchUpload) for a part of a completed upload: an outage.
    with pytest.raises((UploadStateInvalid, StorageUnavailable)):
        s3.commit_upload(writer.close(final=True), "blobs/changed")

    writer = s3.resume_upload(state)
    writer.write(first)
    stored = s3.commit_upload(writer.close(final=True), "blobs/changed")
    assert s3.get(stored) == recorded + first
    s3.delete(stored)
