"""S3-only behaviour: check(), redirects, error translation, state portability."""

from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.request

import pytest
from s3servers import S3Server, free_port, fresh_bucket, s3_driver_for

from storage.driver import InvalidKey, StorageUnavailable, UploadStateInvalid
from storage.s3 import S3Config, S3Driver, UploadNotReadable

MiB = 1024 * 1024


@pytest.fixture
def s3(server: S3Server, bucket: str) -> S3Driver:
    return s3_driver_for(server, bucket)


def test_check_passes(s3: S3Driver) -> None:
    s3.check()


def test_check_closed_port_fails_fast() -> None:
    driver = S3Driver(
        S3Config(
            bucket="anything",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            path_style=True,
            access_key="a",
            secret_key="b",
        )
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        driver.check()
    assert time.monotonic() - started < 5


def test_check_missing_bucket_fails_fast(server: S3Server) -> None:
    driver = s3_driver_for(server, "no-such-bucket-here")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"no-such-bucket-here.*does not exist"):
        driver.check()
    assert time.monotonic() - started < 5


def test_wrong_credentials_are_unavailable(rclone_server: S3Server) -> None:
    # moto accepts any key; rclone checks them.
    bucket = fresh_bucket(rclone_server)
    try:
        driver = s3_driver_for(rclone_server, bucket, secret_key="wrong-secret")
        with pytest.raises(StorageUnavailable, match=r"access denied|S3 error"):
            driver.check()
        with pytest.raises(StorageUnavailable):
            driver.put("k", b"v")
    finally:
        rclone_server.delete_bucket(bucket)


@pytest.mark.parametrize("source", ["environment", "credentials file"])
def test_credentials_from_the_standard_chain(
    rclone_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    source: str,
) -> None:
    """Without keys in the config, boto3's chain supplies them (rclone checks keys)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    access, secret = rclone_server.access_key, rclone_server.secret_key

    def use(key_id: str, key: str) -> None:
        if source == "environment":
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
        else:
            path = tmp_path / "credentials"
            path.write_text(
                f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {key}\n"
            )
            monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))

    bucket = fresh_bucket(rclone_server)
    try:
        use(access, secret)
        driver = s3_driver_for(rclone_server, bucket, access_key=None, secret_key=None)
        driver.check()
        driver.put("chain", b"from the chain")
        assert driver.get("chain") == b"from the chain"
        driver.delete("chain")
        use(access, "not-the-secret")
        refused = s3_driver_for(rclone_server, bucket, access_key=None, secret_key=None)
        with pytest.raises(StorageUnavailable, match=r"access denied|S3 error"):
            refused.check()
    finally:
        rclone_server.delete_bucket(bucket)


def test_operations_on_closed_port_are_unavailable() -> None:
    driver = S3Driver(
        S3Config(
            bucket="anything",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            path_style=True,
            access_key="a",
            secret_key="b",
            max_retries=0,
        )
    )
    with pytest.raises(StorageUnavailable):
        driver.get("k")
    with pytest.raises(StorageUnavailable):
        list(driver.list(""))
    # Invalid keys are rejected before the (dead) backend is touched.
    with pytest.raises(InvalidKey):
        driver.get("../k")
    with pytest.raises(InvalidKey):
        driver.put("a//b", b"")


def test_redirect_url(server: S3Server, s3: S3Driver) -> None:
    s3.put("blob/x", b"redirected bytes")
    assert s3.redirect_url("blob/x", 60) is None
    redirecting = s3_driver_for(server, s3.config.bucket, redirect=True)
    url = redirecting.redirect_url("blob/x", 60)
    assert url is not None and url.startswith(server.endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"redirected bytes"
    s3.delete("blob/x")


def test_keys_live_under_prefix(server: S3Server, s3: S3Driver) -> None:
    s3.put("a/b", b"1")
    keys = [o["Key"] for o in server.client().list_objects_v2(Bucket=s3.config.bucket)["Contents"]]
    assert keys == ["registry/v1/a/b"]
    s3.delete("a/b")


def test_state_resumes_in_another_driver_instance(server: S3Server, s3: S3Driver) -> None:
    """The token alone (as stored in the database) lets another process continue."""
    first, second = os.urandom(6 * MiB + 5), os.urandom(2 * MiB)
    writer = s3.resume_upload(s3.start_upload("portable"))
    writer.write(first)
    state = writer.close()
    token = json.loads(state.token)
    assert len(token["parts"]) == 1 and token["tail_size"] == len(first) - 5 * MiB
    other = s3_driver_for(server, s3.config.bucket)
    writer = other.resume_upload(state)
    writer.write(second)
    state = writer.close()
    stored = other.commit_upload(state, "blobs/portable")
    assert stored == "_blobs/portable"
    assert s3.get(stored) == first + second
    # A retried commit (e.g. after a lost response) finds the object in place.
    assert s3.commit_upload(state, "blobs/portable") == stored
    s3.delete(stored)


def test_read_upload_with_parts_is_refused_clearly(s3: S3Driver) -> None:
    writer = s3.resume_upload(s3.start_upload("parts"))
    writer.write(os.urandom(5 * MiB + 1))
    state = writer.close()
    with pytest.raises(UploadNotReadable, match="multipart"):
        s3.read_upload(state)
    s3.abort_upload(state)


def test_reserved_keys(s3: S3Driver) -> None:
    for key in ("_uploads/x", "_blobs/x"):
        with pytest.raises(InvalidKey):
            s3.put(key, b"")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="part size"):
        S3Config(bucket="b", part_size=MiB)
    with pytest.raises(ValueError, match="both"):
        S3Config(bucket="b", access_key="a")
    with pytest.raises(InvalidKey):
        S3Config(bucket="b", prefix="../up")


def test_rclone_streaming_multipart(rclone_streaming_server: S3Server) -> None:
    """rclone's default (streaming) multipart mode: normal uploads work; replacing a
    part an abandoned writer already sent is impossible and fails clearly."""
    server = rclone_streaming_server
    bucket = fresh_bucket(server)
    try:
        s3 = s3_driver_for(server, bucket)
        data = os.urandom(12 * MiB + 3)
        writer = s3.resume_upload(s3.start_upload("stream"))
        writer.write(data)
        stored = s3.commit_upload(writer.close(), "blobs/stream")
        assert s3.get(stored) == data
        s3.delete(stored)

        # The state must already hold a multipart upload that the stale writer feeds.
        writer = s3.resume_upload(s3.start_upload("stale"))
        writer.write(os.urandom(5 * MiB + 1))
        state = writer.close()
        stale = s3.resume_upload(state)
        stale.write(os.urandom(6 * MiB))
        stale.abandon()
        writer = s3.resume_upload(state)
        with pytest.raises(UploadStateInvalid, match="cannot replace part"):
            # Parts are sent in the background: the error comes by close() at the latest.
            writer.write(os.urandom(6 * MiB))
            writer.close()
        s3.abort_upload(state)
        assert server.leftovers(bucket) == []
    finally:
        server.delete_bucket(bucket)
