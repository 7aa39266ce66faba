"""A final PUT with a last chunk whose storage commit took effect, whose blob row the
database refused, and whose acknowledged bytes then cannot be copied into a fresh upload
(S3 filled up right after the commit: real rclone behind a proxy answering as a full
MinIO). No session is put back pointing at the consumed upload: the client learns at
once that the upload is unknown and pushes the blob again, and nothing is left behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from blob_row_refusal import MESSAGE, refusing_blob_rows
from gcenv import Env, database_url, digest_of
from s3_full_proxy import FullProxy
from s3servers import TEST_PART_SIZE, ToolMissing, fresh_bucket, s3_driver_for, start_rclone
from support.tools import unavailable

from registry.domain.digests import parse_digest
from registry.domain.errors import BLOB_UPLOAD_UNKNOWN, RegistryError


@pytest.mark.parametrize(
    "acknowledged",
    [b"acknowledged by a PATCH " * 200, b"p" * (TEST_PART_SIZE + 3), b""],
    # An empty session gets a fresh (empty) upload instead, which S3 refuses as well.
    ids=["copied-commit", "multipart-commit", "empty-session"],
)
def test_no_session_is_put_back_when_its_bytes_cannot_be_restored(
    backend: str, tmp_path: Path, acknowledged: bytes
) -> None:
    try:
        server = start_rclone()
    except ToolMissing as exc:
        unavailable(f"rclone is not installed: {exc}")
    proxy = FullProxy(server.endpoint_url)
    try:
        driver = s3_driver_for(server, fresh_bucket(server), endpoint_url=proxy.endpoint_url)
        env = Env.create(database_url(backend, tmp_path), driver)
        try:
            _check(env, proxy, acknowledged, b"the last chunk" * 50)
        finally:
            env.db.dispose()
    finally:
        proxy.close()
        server.stop()


def _check(env: Env, proxy: FullProxy, acknowledged: bytes, tail: bytes) -> None:
    blob = acknowledged + tail
    upload = env.uploads.start("app", None)
    appender = env.uploads.open_append("app", upload.id, None, 0)
    appender.write(acknowledged)
    appender.finish()  # the PATCH's 202: these bytes are acknowledged

    proxy.refusing = "after a commit"
    appender = env.uploads.open_append("app", upload.id, None, len(acknowledged))
    try:
        appender.write(tail)
        with refusing_blob_rows(env), pytest.raises((sqlite3.Error, psycopg.Error), match=MESSAGE):
            env.uploads.complete_appender(appender, parse_digest(digest_of(blob)))
    finally:
        appender.abandon()
    assert proxy.refusing == "writes", "the commit did not take effect"
    assert proxy.refused, "the fresh upload was not refused"
    proxy.refusing = "nothing"

    with pytest.raises(RegistryError) as unknown:
        env.uploads.status("app", upload.id, None)
    assert unknown.value.code is BLOB_UPLOAD_UNKNOWN
    assert [u for u, _ in env.driver.list_uploads() if u == upload.id] == []

    # The client pushes the blob again, and its bytes match the digest.
    env.push_blob("app", blob)
    stored = env.blobs.stat("app", parse_digest(digest_of(blob)))
    assert b"".join(env.blobs.open(stored)) == blob
