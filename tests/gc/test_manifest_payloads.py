"""Manifest bytes in their row (migration 0009) beside rows from before it, whose
bytes are in storage: reads, deletes, GC and fsck handle both."""

from __future__ import annotations

import json

from gcenv import OCI_INDEX, Env, digest_of
from support.pre_0009 import move_payload_to_storage

from registry.services.fsck import FsckService
from registry.services.manifests import ManifestService


def _body(env: Env, repo: str, tag: str, layer: bytes) -> tuple[str, bytes]:
    """Push an image; return its manifest digest and exact bytes."""
    image = env.push_image(repo, tag, [layer])
    record = env.manifests.resolve(repo, tag)
    assert record.digest == image["digest"]
    return image["digest"], env.manifests.payload(record)


def test_pushed_manifest_lives_in_its_row(env: Env) -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    body = json.dumps(doc, indent=3).encode() + b"\n"  # odd whitespace is kept as pushed
    env.manifests.put("rows/app", "v1", OCI_INDEX, body)
    record = env.manifests.resolve("rows/app", "v1")
    assert record.storage_key is None and record.size == len(body)
    assert env.manifests.payload(record) == body
    assert list(env.driver.list("manifests")) == []
    stored = env.db.fetch_one("SELECT payload FROM manifests WHERE id = :i", {"i": record.id})
    assert stored is not None and bytes(stored[0]) == body


def test_pre_0009_manifest_serves_and_deletes_its_object(env: Env) -> None:
    old, old_body = _body(env, "mixed/app", "old", b"old layer")
    new, new_body = _body(env, "mixed/app", "new", b"new layer")
    key = move_payload_to_storage(env.db, env.driver, "mixed/app", old)
    cached = ManifestService(env.db, env.driver, 4 << 20)
    for service in (env.manifests, cached, cached):  # uncached, then a cache miss and hit
        for tag, body in (("old", old_body), ("new", new_body)):
            record = service.resolve("mixed/app", tag)
            assert service.payload(record) == body
    assert cached.resolve("mixed/app", "old").storage_key == key
    assert list(env.driver.list("manifests")) == [key]

    env.manifests.delete("mixed/app", old)  # by digest: its storage object goes too
    env.manifests.delete("mixed/app", new)
    assert env.manifest_digests("mixed/app") == set()
    assert list(env.driver.list("manifests")) == []


def test_gc_frees_manifests_of_both_kinds(env: Env) -> None:
    old, old_body = _body(env, "gc/app", "old", b"old layer")
    _, new_body = _body(env, "gc/app", "new", b"new layer")
    move_payload_to_storage(env.db, env.driver, "gc/app", old)
    blobs = env.db.fetch_all("SELECT size FROM blobs", {})
    env.manifests.delete("gc/app", "old")
    env.manifests.delete("gc/app", "new")
    report = env.collector().run()
    assert report.manifests_deleted == 2 and report.blobs_deleted == len(blobs) == 4
    # A manifest counts as freed wherever its bytes were (only the old one had an object).
    assert report.objects_freed == 2 + len(blobs)
    assert report.bytes_freed == len(old_body) + len(new_body) + sum(r[0] for r in blobs)
    assert list(env.driver.list("manifests")) == [] and list(env.driver.list("blobs")) == []
    assert env.db.fetch_all("SELECT storage_key FROM gc_storage_deletions", {}) == []


def test_fsck_checks_only_manifests_held_in_storage(env: Env) -> None:
    old, _ = _body(env, "fsck/app", "old", b"old layer")
    kept, _ = _body(env, "fsck/app", "kept", b"kept layer")
    key = move_payload_to_storage(env.db, env.driver, "fsck/app", old)
    fsck = FsckService(env.db, env.driver)
    assert fsck.check().clean  # rows holding their bytes are not "missing from storage"

    stray = "manifests/sha256/ab/" + "ab" * 32 + ".0123456789ab"
    env.driver.put(stray, b"{}")  # no row points to it
    env.driver.delete(key)
    report = fsck.check()
    assert report.orphan_objects == [stray]
    assert report.missing_manifests == [("fsck/app", old)]
    repaired = fsck.check(repair=True, grace_seconds=0)
    assert repaired.removed_manifests == [("fsck/app", old)]
    assert repaired.deleted_objects == [stray]
    assert env.manifest_digests("fsck/app") == {kept}
    assert fsck.check().clean
    assert digest_of(env.manifests.payload(env.manifests.resolve("fsck/app", "kept"))) == kept
