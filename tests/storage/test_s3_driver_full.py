"""A full S3 store: StorageFull (507 for clients) when the server says so, and nothing lost.

MinIO past its free-space threshold answers HTTP 507 ``XMinioStorageFull``; ``s3_full_proxy``
answers writes that way in front of a real rclone. ``rclone serve s3`` itself, on a full
filesystem, answers 500 ``InternalError`` "Internal Error", as for any other fault: the
driver cannot tell, so it stays an outage (StorageUnavailable); a real rclone on a small
tmpfs pins that, and that the upload's last durable state survives it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_full_proxy import FullProxy
from s3servers import S3Server, fresh_bucket, s3_driver_for, start_rclone
from support.tmpfs import MIB, fill, small_disk

from storage.driver import StorageFull, StorageUnavailable, UploadState
from storage.s3 import S3Driver


def _upload(s3: S3Driver, data: bytes) -> UploadState:
    state = s3.start_upload(uuid.uuid4().hex)
    writer = s3.resume_upload(state)
    writer.write(data)
    return writer.close()


@pytest.fixture
def proxied(rclone_server: S3Server) -> Iterator[tuple[FullProxy, S3Driver]]:
    bucket = fresh_bucket(rclone_server)
    proxy = FullProxy(rclone_server.endpoint_url)
    try:
        yield proxy, s3_driver_for(rclone_server, bucket, endpoint_url=proxy.endpoint_url)
    finally:
        proxy.close()
    leftovers = rclone_server.leftovers(bucket)
    rclone_server.delete_bucket(bucket)
    assert leftovers == [], "test left objects or uploads behind"


def test_minio_full_answer_is_storage_full(proxied: tuple[FullProxy, S3Driver]) -> None:
    proxy, s3 = proxied
    first = os.urandom(1000)
    state = _upload(s3, first)
    proxy.refusing = "writes"
    with pytest.raises(StorageFull, match="XMinioStorageFull"):
        s3.check()
    with pytest.raises(StorageFull):
        s3.put("refused", b"x")
    writer = s3.resume_upload(state)
    writer.write(os.urandom(1000))
    with pytest.raises(StorageFull):
        writer.close()
    with pytest.raises(StorageFull):
        s3.commit_upload(state, "blobs/one")
    # 507 is final, not retried: one answer per refused call.
    assert proxy.refused == 4
    proxy.refusing = "nothing"
    # The last durable state is intact once space is back.
    key = s3.commit_upload(state, "blobs/one")
    assert s3.get(key) == first
    s3.delete(key)


def test_rclone_full_disk_is_an_outage_and_keeps_the_upload(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 32) as disk:
        server = start_rclone(data_dir=disk / "data")
        try:
            s3 = s3_driver_for(server, fresh_bucket(server), max_retries=0)
            first = os.urandom(MIB)
            state = _upload(s3, first)
            fill(disk / "filler", 0)
            with pytest.raises(StorageUnavailable, match="InternalError"):
                s3.put("refused", os.urandom(MIB))
            writer = s3.resume_upload(state)
            writer.write(os.urandom(MIB))
            with pytest.raises(StorageUnavailable):
                writer.close()
            (disk / "filler").unlink()
            key = s3.commit_upload(state, "blobs/one")
            assert s3.get(key) == first
        finally:
            server.stop()
