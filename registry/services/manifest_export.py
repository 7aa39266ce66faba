"""Writing manifests held in the database out to storage, so the schema can go below 0009.

Since migration 0009 a manifest's bytes live in its row (``manifests.payload``);
before it they lived in storage under ``storage_key``. The registry serves both
forms, so this runs while it is online: each manifest's bytes are written (and
durable) before its row points at them, one row at a time.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from registry.db.engine import Database
from storage.driver import Driver, ObjectNotFound

_HELD = (
    "SELECT id, digest, payload FROM manifests"
    " WHERE storage_key IS NULL AND id > :after ORDER BY id LIMIT :limit"
)
# Only a row still holding its bytes: one deleted or exported meanwhile is left alone.
_POINT_AT_OBJECT = (
    "UPDATE manifests SET storage_key = :key, payload = NULL WHERE id = :id AND storage_key IS NULL"
)


@dataclass(frozen=True, slots=True)
class ExportReport:
    stored: int
    bytes: int
    vanished: int  # deleted (or exported by another run) while this one wrote them


def manifest_object_key(digest: str) -> str:
    """The key layout revision 0008 wrote: a random suffix per row, so rows never share one."""
    algorithm, hex_digest = digest.split(":", 1)
    return f"manifests/{algorithm}/{hex_digest[:2]}/{hex_digest}.{uuid.uuid4().hex[:12]}"


def store_manifest(
    db: Database, driver: Driver, row_id: int, digest: str, payload: bytes
) -> str | None:
    """Write one manifest's bytes to storage, then point its row at them; the key.

    None (and the object removed again) when the row no longer holds its bytes.
    """
    key = manifest_object_key(digest)
    driver.put(key, payload)
    changed = db.run_raw(lambda tx: tx.run(_POINT_AT_OBJECT, {"key": key, "id": row_id}))
    if not changed:
        with contextlib.suppress(ObjectNotFound):
            driver.delete(key)
        return None
    return key


def export_manifests(
    db: Database,
    driver: Driver,
    *,
    batch: int = 200,
    progress: Callable[[int], None] = lambda stored: None,
) -> ExportReport:
    """Move every database-held manifest's bytes to storage (see the module doc)."""
    stored = size = vanished = 0
    after = 0
    while rows := db.fetch_all(_HELD, {"after": after, "limit": batch}):
        for row_id, digest, payload in rows:
            after = row_id
            data = bytes(payload)
            if store_manifest(db, driver, row_id, digest, data) is not None:
                stored += 1
                size += len(data)
            else:
                vanished += 1
        progress(stored)
    return ExportReport(stored=stored, bytes=size, vanished=vanished)


def held_manifest_count(db: Database) -> int:
    row = db.fetch_one("SELECT count(*) FROM manifests WHERE storage_key IS NULL", {})
    return int(row[0]) if row else 0
