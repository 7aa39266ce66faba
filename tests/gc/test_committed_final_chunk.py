"""A final PUT that carried a last chunk onto a session with acknowledged bytes, whose
storage commit took effect but whose blob row the database refused: the session is
put back, and the client's retry of that same PUT (last chunk included) succeeds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from blob_row_refusal import MESSAGE, refusing_blob_rows
from gcenv import Env, database_url, digest_of
from s3servers import TEST_PART_SIZE, ToolMissing, fresh_bucket, s3_driver_for, start_rclone
from support.tools import unavailable

from registry.domain.digests import parse_digest
from registry.services.fsck import FsckService


def _final_put(env: Env, upload_id: str, start: int, tail: bytes, digest: str) -> None:
    """What the PUT handler does with a last chunk: append it, then commit."""
    appender = env.uploads.open_append("app", upload_id, None, start)
    try:
        appender.write(tail)
        env.uploads.complete_appender(appender, parse_digest(digest))
    except BaseException:
        appender.abandon()
        raise


def test_retried_final_put_with_a_chunk_after_a_committed_but_unrecorded_blob(
    env: Env,
) -> None:
    _check_retry(env, b"acknowledged by a PATCH " * 200, b"the last chunk" * 50)


def _check_retry(env: Env, acknowledged: bytes, tail: bytes) -> None:
    digest = digest_of(acknowledged + tail)
    upload = env.uploads.start("app", None)
    appender = env.uploads.open_append("app", upload.id, None, 0)
    appender.write(acknowledged)
    appender.finish()  # the PATCH's 202: these bytes are acknowledged

    with refusing_blob_rows(env), pytest.raises((sqlite3.Error, psycopg.Error), match=MESSAGE):
        _final_put(env, upload.id, len(acknowledged), tail, digest)
    assert env.uploads.status("app", upload.id, None).size == len(acknowledged)

    _final_put(env, upload.id, len(acknowledged), tail, digest)  # the client's retry
    blob = env.blobs.stat("app", parse_digest(digest))
    assert b"".join(env.blobs.open(blob)) == acknowledged + tail
    report = FsckService(env.db, env.driver).check()
    assert report.clean, report  # the retry committed under the first commit's key


def test_the_same_on_s3_with_a_multipart_upload(backend: str, tmp_path: Path) -> None:
    """On S3 (real rclone) the commit completes a multipart upload under _blobs/<id>."""
    try:
        server = start_rclone()
    except ToolMissing as exc:
        unavailable(f"rclone is not installed: {exc}")
    try:
        driver = s3_driver_for(server, fresh_bucket(server))
        env = Env.create(database_url(backend, tmp_path), driver)
        try:
            _check_retry(env, b"p" * (TEST_PART_SIZE + 3), b"tail" * (TEST_PART_SIZE // 3))
        finally:
            env.db.dispose()
    finally:
        server.stop()
