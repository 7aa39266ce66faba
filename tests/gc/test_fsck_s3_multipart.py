"""fsck on S3 (real rclone) sees blobs committed from multipart uploads, which S3
stores under ``_blobs/<upload id>``: they are neither missing nor unseen orphans."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from blob_row_refusal import MESSAGE, refusing_blob_rows
from gcenv import Env, database_url, digest_of
from s3servers import TEST_PART_SIZE, ToolMissing, fresh_bucket, s3_driver_for, start_rclone
from sqlalchemy import text
from support.tools import unavailable

from registry.domain.digests import parse_digest
from registry.services.fsck import FsckService

BIG = TEST_PART_SIZE * 2 + 5  # several parts: a multipart upload


def _crashed_commit(env: Env, data: bytes) -> str:
    """An upload committed in storage whose process died before recording its row
    (the session row is claimed before the commit): its upload id."""
    upload = env.uploads.start("app", None)
    appender = env.uploads.open_append("app", upload.id, None, 0)
    appender.write(data)
    appender.finish()
    digest = parse_digest(digest_of(data))
    with refusing_blob_rows(env), pytest.raises((sqlite3.Error, psycopg.Error), match=MESSAGE):
        env.uploads.complete("app", upload.id, None, digest)
    with env.db.write() as session:  # the session put back is gone with the process
        session.execute(text("DELETE FROM upload_sessions WHERE id = :i"), {"i": upload.id})
    return upload.id


def test_fsck_sees_multipart_blobs_on_s3(backend: str, tmp_path: Path) -> None:
    try:
        server = start_rclone()
    except ToolMissing as exc:
        unavailable(f"rclone is not installed: {exc}")
    try:
        env = Env.create(
            database_url(backend, tmp_path), s3_driver_for(server, fresh_bucket(server))
        )
        env.push_image("app", "v1", [b"x" * BIG, b"small layer"])
        keys = {r[0] for r in env.db.fetch_all("SELECT storage_key FROM blobs", {})}
        assert any(k.startswith("_blobs/") for k in keys)
        fsck = FsckService(env.db, env.driver)
        report = fsck.check()
        assert report.missing_blobs == [] and report.clean, report

        upload_id = _crashed_commit(env, b"y" * BIG)
        assert fsck.check().orphan_objects == [f"_blobs/{upload_id}"]
        repaired = fsck.check(repair=True, grace_seconds=0)
        assert repaired.deleted_objects == [f"_blobs/{upload_id}"]
        assert set(env.driver.list("_blobs")) == {k for k in keys if k.startswith("_blobs/")}
        assert fsck.check().clean
        env.db.dispose()
    finally:
        server.stop()
