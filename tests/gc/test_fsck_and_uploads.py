"""``fsck`` finds and repairs each kind of disagreement between storage and the
database; GC aborts stale upload sessions and uploads storage holds without a row."""

from __future__ import annotations

import datetime as dt
import time

from gcenv import Env, digest_of

from registry.services.fsck import FsckService
from registry.services.gc import GarbageCollector


def test_fsck_reports_then_repairs_orphans_and_missing_bytes(env: Env) -> None:
    kept = env.push_image("fsck/app", "kept", [b"kept layer\n" * 10])
    broken = env.push_image("fsck/app", "broken", [b"lost layer\n" * 10])
    lost = digest_of(b"lost layer\n" * 10)
    lost_key = env.db.fetch_one("SELECT storage_key FROM blobs WHERE digest = :d", {"d": lost})
    assert lost_key is not None
    env.driver.delete(str(lost_key[0]))
    orphan = "blobs/sha256/00/" + "0" * 64
    env.driver.put(orphan, b"bytes no row points to")
    env.driver.start_upload("stray-upload")  # no session row
    fsck = FsckService(env.db, env.driver)

    report = fsck.check()
    assert not report.clean
    assert report.missing_blobs == [lost]
    assert report.orphan_objects == [orphan]
    assert report.orphan_uploads == ["stray-upload"]
    assert env.manifest_digests("fsck/app") == {kept["digest"], broken["digest"]}  # read-only

    # Orphans go only once seen unreferenced for the grace period.
    patient = fsck.check(repair=True, grace_seconds=3600)
    assert patient.deleted_objects == [] and patient.deleted_uploads == []
    assert patient.removed_blobs == [lost]  # bytes are gone either way
    assert patient.removed_manifests == [("fsck/app", broken["digest"])]

    time.sleep(0.05)
    repaired = fsck.check(repair=True, grace_seconds=0.01)
    assert repaired.deleted_objects == [orphan]
    assert repaired.deleted_uploads == ["stray-upload"]
    assert fsck.check().clean
    assert env.manifest_digests("fsck/app") == {kept["digest"]}
    assert dict(env.driver.list_uploads()) == {}


def test_gc_aborts_stale_upload_sessions(env: Env) -> None:
    status = env.uploads.start("uploads/app", None)
    appender = env.uploads.open_append("uploads/app", status.id, None, 0)
    appender.write(b"half a layer")
    appender.finish()
    fresh = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=3600)
    assert fresh.run().uploads_deleted == 0
    assert [u for u, _ in env.driver.list_uploads()] == [status.id]

    time.sleep(0.05)
    stale = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=0.01)
    assert stale.run(dry_run=True).uploads_deleted == 1
    assert stale.run().uploads_deleted == 1
    assert env.db.fetch_all("SELECT id FROM upload_sessions", {}) == []
    assert dict(env.driver.list_uploads()) == {}


def test_gc_spares_a_stale_session_while_a_patch_holds_its_lease(env: Env) -> None:
    status = env.uploads.start("uploads/app", None)
    first = env.uploads.open_append("uploads/app", status.id, None, 0)
    first.write(b"first chunk ")
    first.finish()
    time.sleep(0.05)
    # The client resumes after a long pause: its PATCH is streaming (lease held) when GC runs.
    resumed = env.uploads.open_append("uploads/app", status.id, None, len(b"first chunk "))
    resumed.write(b"second chunk")
    stale = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=0.01)
    assert stale.run().uploads_deleted == 0
    assert resumed.finish().size == len(b"first chunk second chunk")
    time.sleep(0.05)
    assert stale.run().uploads_deleted == 1
    assert dict(env.driver.list_uploads()) == {}


def test_gc_purges_a_stale_session_whose_writer_died_holding_its_lease(env: Env) -> None:
    status = env.uploads.start("uploads/app", None)
    dead = env.uploads.open_append("uploads/app", status.id, None, 0)
    dead.write(b"never finished")
    stale = GarbageCollector(env.db, env.driver, review_delay=0, upload_purge_after=0.01)
    time.sleep(0.05)
    assert stale.run().uploads_deleted == 0  # the lease still holds
    # The process died mid-PATCH: its lease ran out a minute ago, nobody released it.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with env.db.raw_transaction() as tx:
        tx.run(
            "UPDATE upload_sessions SET lease_expires_at = :t WHERE id = :id",
            {"t": tx.timestamp(past), "id": status.id},
        )
    assert stale.run().uploads_deleted == 1
    assert env.db.fetch_all("SELECT id FROM upload_sessions", {}) == []
    dead.abandon()  # closes its file; the session and its bytes are gone already
