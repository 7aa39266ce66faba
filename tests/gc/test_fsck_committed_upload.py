"""fsck --repair spares the bytes of an upload whose commit took effect in storage but
whose row insert failed: the session is put back, and the client's retry finds them."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from blob_row_refusal import MESSAGE, refusing_blob_rows
from gcenv import Env, digest_of

from registry.domain.digests import parse_digest
from registry.services.fsck import FsckService


def test_fsck_spares_a_committed_upload_whose_row_insert_failed(env: Env) -> None:
    data = b"acknowledged layer bytes" * 100
    digest = parse_digest(digest_of(data))
    upload = env.uploads.start("app", None)
    appender = env.uploads.open_append("app", upload.id, None, 0)
    appender.write(data)
    appender.finish()  # the PATCH's 202: these bytes are acknowledged

    # The database refuses the blob row: the commit fails after storage took effect.
    with refusing_blob_rows(env), pytest.raises((sqlite3.Error, psycopg.Error), match=MESSAGE):
        env.uploads.complete("app", upload.id, None, digest)
    committed = [k for k in env.driver.list("blobs") if k.endswith(f".{upload.id}")]
    assert len(committed) == 1  # the bytes are under the upload's own key, with no row
    assert env.uploads.status("app", upload.id, None).size == len(data)  # session put back

    fsck = FsckService(env.db, env.driver)
    # Grace 0 stands for a session left longer than any grace (a retry the next day).
    report = fsck.check(repair=True, grace_seconds=0)
    assert committed[0] not in report.orphan_objects + report.deleted_objects
    assert committed[0] in env.driver.list("blobs")

    env.uploads.complete("app", upload.id, None, digest)  # the client's retry
    assert b"".join(env.blobs.open(env.blobs.stat("app", digest))) == data
    assert fsck.check().clean
