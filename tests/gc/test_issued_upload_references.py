"""Upload references that POST issues without recording anything (registry.domain.
upload_refs): a PATCH records the session, a final PUT without a row is a one-request
upload that ends the reference, and expired references and their end marks go."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from gcenv import Env, digest_of

from registry.domain.digests import parse_digest
from registry.domain.errors import BLOB_UPLOAD_UNKNOWN, RANGE_INVALID, RegistryError
from registry.domain.upload_refs import (
    MAX_CLOCK_AHEAD,
    issue_reference,
    issued_at,
    verified_issue_time,
)
from registry.services.gc import GarbageCollector
from registry.services.uploads import UploadService


def _count(env: Env, table: str) -> int:
    return int(env.db.fetch_all(f"SELECT COUNT(*) FROM {table}", {})[0][0])


def _unknown(call: object) -> None:
    assert callable(call)
    with pytest.raises(RegistryError) as caught:
        call()
    assert caught.value.code is BLOB_UPLOAD_UNKNOWN


def test_post_records_nothing_until_a_patch_stores_bytes(env: Env) -> None:
    status = env.uploads.start("refs/app", None)
    assert (_count(env, "upload_sessions"), list(env.driver.list_uploads())) == (0, [])
    assert env.uploads.status("refs/app", status.id, None).size == 0

    appender = env.uploads.open_append("refs/app", status.id, None, 0)
    appender.write(b"first ")
    appender.finish()
    assert _count(env, "upload_sessions") == 1
    assert env.uploads.status("refs/app", status.id, None).size == 6
    env.uploads.put_small(
        "refs/app", status.id, None, 6, b"last", parse_digest(digest_of(b"first last"))
    )
    assert (_count(env, "upload_sessions"), _count(env, "upload_ends")) == (0, 1)
    _unknown(lambda: env.uploads.status("refs/app", status.id, None))
    _unknown(lambda: env.uploads.open_append("refs/app", status.id, None, 0))


def test_a_final_put_on_an_empty_session_commits_once_and_ends_it(env: Env) -> None:
    data = b"a whole small layer"
    status = env.uploads.start("refs/app", None)
    with pytest.raises(RegistryError) as wrong_offset:
        env.uploads.put_small("refs/app", status.id, None, 5, data, parse_digest(digest_of(data)))
    assert wrong_offset.value.code is RANGE_INVALID
    info = env.uploads.put_small(
        "refs/app", status.id, None, 0, data, parse_digest(digest_of(data))
    )
    assert info.digest == digest_of(data)
    assert _count(env, "upload_sessions") == 0
    _unknown(lambda: env.uploads.status("refs/app", status.id, None))
    # The same bytes through another reference: the blob exists, the reference still ends.
    again = env.uploads.start("refs/app", None)
    env.uploads.put_small("refs/app", again.id, None, None, data, parse_digest(digest_of(data)))
    _unknown(lambda: env.uploads.status("refs/app", again.id, None))


def test_storage_left_by_a_dead_first_patch_refuses_only_patches(env: Env) -> None:
    status = env.uploads.start("refs/app", None)
    # A first PATCH that started the session's storage and died before recording its row.
    env.driver.start_upload(status.id)
    _unknown(lambda: env.uploads.open_append("refs/app", status.id, None, 0))
    # A final PUT needs no storage under the reference: the session still completes.
    data = b"pushed whole"
    env.uploads.put_small("refs/app", status.id, None, None, data, parse_digest(digest_of(data)))
    assert env.blobs.stat("refs/app", parse_digest(digest_of(data))).size == len(data)


def test_foreign_made_up_and_future_references_are_unknown(env: Env) -> None:
    status = env.uploads.start("refs/app", "alice")
    _unknown(lambda: env.uploads.status("refs/app", status.id, "bob"))
    _unknown(lambda: env.uploads.status("refs/other", status.id, "alice"))
    tampered = status.id[:-1] + ("0" if status.id[-1] != "0" else "1")
    _unknown(lambda: env.uploads.status("refs/app", tampered, "alice"))
    _unknown(lambda: env.uploads.cancel("refs/app", "f" * 64, "alice"))
    now = time.time()
    assert verified_issue_time(issue_reference("r", None, now + 3600), "r", None, now) is None
    assert verified_issue_time(issue_reference("r", None, now), "r", None, now) == int(now)


def test_expired_references_and_their_end_marks_go(env: Env) -> None:
    short = UploadService(env.db, env.driver, session_lifetime=1)
    kept = short.start("refs/app", None)
    cancelled = short.start("refs/app", None)
    short.cancel("refs/app", cancelled.id, None)
    _unknown(lambda: short.status("refs/app", cancelled.id, None))
    assert _count(env, "upload_ends") == 1
    collector = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=1)
    collector.run()
    assert _count(env, "upload_ends") == 1  # not expired yet
    assert short.status("refs/app", kept.id, None).size == 0
    time.sleep(2.1)
    _unknown(lambda: short.status("refs/app", kept.id, None))
    # An end mark outlives its reference by the clock skew replicas may have.
    expires = env.db.fetch_all("SELECT expires_at FROM upload_ends", {})[0][0]
    assert expires == issued_at(cancelled.id) + 1 + MAX_CLOCK_AHEAD + 1
    collector.run()
    assert _count(env, "upload_ends") == 1
    with env.db.raw_transaction() as tx:  # the skew margin has passed
        tx.run("UPDATE upload_ends SET expires_at = expires_at - :m", {"m": MAX_CLOCK_AHEAD})
    collector.run()
    assert _count(env, "upload_ends") == 0


def test_a_commit_that_died_after_claiming_its_session_leaves_it_ended(env: Env) -> None:
    """A final PUT's commit claims (deletes) the session row before touching storage; a
    process killed right after must not leave the reference looking like a fresh empty
    session (204 Range 0-0, a PATCH starting over at 0): it had acknowledged bytes."""
    status = env.uploads.start("refs/app", None)
    appender = env.uploads.open_append("refs/app", status.id, None, 0)
    appender.write(b"acknowledged")
    appender.finish()
    # The commit's first step, as UploadService._commit takes it; the process dies here.
    end = env.uploads.sessions.end_of(status.id)
    env.uploads._claim("refs/app", status.id, len(b"acknowledged"), None, end)
    _unknown(lambda: env.uploads.status("refs/app", status.id, None))
    _unknown(lambda: env.uploads.open_append("refs/app", status.id, None, 0))
    data = b"a retried whole blob"
    _unknown(
        lambda: env.uploads.put_small(
            "refs/app", status.id, None, None, data, parse_digest(digest_of(data))
        )
    )


def _died_after_recording(env: Env, reference: str) -> None:
    """A first PATCH that recorded the session's row and died before starting its storage:
    the row has no storage and a lease that ran out a minute ago."""
    assert env.uploads.sessions.record_empty("refs/app", reference, None) is not None
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with env.db.raw_transaction() as tx:
        tx.run(
            "UPDATE upload_sessions SET lease_expires_at = :t, updated_at = :t WHERE id = :id",
            {"t": tx.timestamp(past), "id": reference},
        )


def test_a_session_recorded_without_storage_goes_on_ends_or_is_purged(env: Env) -> None:
    # A racing first PATCH finds the row leased: 416, as on any session.
    racing = env.uploads.start("refs/app", None)
    first = env.uploads.open_append("refs/app", racing.id, None, 0)
    with pytest.raises(RegistryError) as busy:
        env.uploads.open_append("refs/app", racing.id, None, 0)
    assert busy.value.code is RANGE_INVALID
    first.write(b"first")
    assert first.finish().size == 5

    # The next PATCH after a first one died starts the storage and goes on.
    resumed = env.uploads.start("refs/app", None)
    _died_after_recording(env, resumed.id)
    assert env.uploads.status("refs/app", resumed.id, None).size == 0
    appender = env.uploads.open_append("refs/app", resumed.id, None, 0)
    appender.write(b"resumed")
    appender.finish()
    env.uploads.complete("refs/app", resumed.id, None, parse_digest(digest_of(b"resumed")))

    # Completed without a body, cancelled, or purged as stale: no storage is touched.
    empty = env.uploads.start("refs/app", None)
    _died_after_recording(env, empty.id)
    env.uploads.complete("refs/app", empty.id, None, parse_digest(digest_of(b"")))
    _unknown(lambda: env.uploads.status("refs/app", empty.id, None))
    cancelled = env.uploads.start("refs/app", None)
    _died_after_recording(env, cancelled.id)
    env.uploads.cancel("refs/app", cancelled.id, None)
    _unknown(lambda: env.uploads.status("refs/app", cancelled.id, None))
    stale = env.uploads.start("refs/app", None)
    _died_after_recording(env, stale.id)
    collector = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=30)
    # The stale row, and the one the bodiless PUT ended (it leaves rows to this purge).
    assert collector.run().uploads_deleted == 2
    assert env.db.fetch_all("SELECT id FROM upload_sessions", {}) == [(racing.id,)]
