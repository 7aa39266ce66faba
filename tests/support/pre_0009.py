"""Manifests as stored before migration 0009: bytes in storage, the row pointing at them."""

from __future__ import annotations

from registry.db.engine import Database
from registry.services.manifest_export import store_manifest
from storage.driver import Driver

_ROW = (
    "SELECT m.id, m.payload FROM manifests m JOIN repositories r ON r.id = m.repository_id"
    " WHERE r.name = :name AND m.digest = :digest"
)


def move_payload_to_storage(db: Database, driver: Driver, repository: str, digest: str) -> str:
    """Turn a manifest row into the pre-0009 form (what 0009 leaves of an 0008 row):
    its bytes written under the old key layout, ``storage_key`` set, no payload."""
    row = db.fetch_one(_ROW, {"name": repository, "digest": digest})
    assert row is not None and row[1] is not None, (repository, digest)
    key = store_manifest(db, driver, int(row[0]), digest, bytes(row[1]))
    assert key is not None, (repository, digest)
    return key
