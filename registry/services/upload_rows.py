"""What upload requests read and write in the database: session rows and their
leases, references that ended, and the blob rows and links a commit records."""

from __future__ import annotations

from dataclasses import dataclass

from registry.db.raw import ClockedSql, RawTx
from registry.domain.errors import UNAVAILABLE, RegistryError
from registry.services.repositories import ensure_repository_raw
from registry.services.upload_appender import SessionRecord
from storage.driver import UploadState


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    repository: str
    subject: str | None
    driver_state: str
    size: int
    hash_algorithm: str
    hash_state: bytes | None

    @property
    def state(self) -> UploadState:
        return UploadState(self.driver_state, self.size)

    @property
    def record(self) -> SessionRecord:
        return SessionRecord(self.subject, self.hash_algorithm, self.hash_state, self.state)


SELECT_ROW = (
    "SELECT id, repository_name, subject, driver_state, size, hash_algorithm, hash_state"
    " FROM upload_sessions WHERE id = :id"
)
# An issued reference: whether it ended, and its row if a PATCH recorded one.
SELECT_ISSUED = (
    "SELECT (SELECT 1 FROM upload_ends WHERE id = :id), s.id, s.repository_name, s.subject,"
    " s.driver_state, s.size, s.hash_algorithm, s.hash_state"
    " FROM (SELECT 1 AS one) AS q LEFT JOIN upload_sessions s ON s.id = :id"
)
_END_REFERENCE = (
    "INSERT INTO upload_ends (id, expires_at) VALUES (:id, :expires) ON CONFLICT (id) DO NOTHING"
)
# Lease times are on the database's clock (see ClockedSql): replicas whose clocks
# disagree must not take over a live lease, nor keep writing on an expired one.
TAKE_LEASE = ClockedSql(
    "UPDATE upload_sessions SET lease_token = :lease, lease_expires_at = {expires}"
    " WHERE id = :id AND size = :size AND (lease_token IS NULL OR lease_expires_at < {now})"
)
# A session recorded without storage gets it under its lease (see NO_STORAGE).
SET_STORAGE = (
    "UPDATE upload_sessions SET driver_state = :state"
    " WHERE id = :id AND lease_token = :lease AND driver_state = ''"
)
# Ending a session claims its row first: no other request may be writing it.
CLAIM_ROW = ClockedSql(
    "DELETE FROM upload_sessions WHERE id = :id AND size = :size"
    " AND (lease_token IS NULL OR lease_token = :lease OR lease_expires_at < {now})"
)
# Re-linking renews the link's age: online GC spares links younger than its
# grace period, so a client re-pushing a layer is not raced by the collector.
_LINK = (
    "INSERT INTO repository_blobs (repository_id, blob_digest, created_at)"
    " VALUES (:repo, :digest, :now) ON CONFLICT (repository_id, blob_digest)"
    " DO UPDATE SET created_at = excluded.created_at"
)
_RECORD_BLOB = (
    "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (:digest, :size, :key, :now)"
    " ON CONFLICT (digest) DO NOTHING"
)


BLOB_EXISTS = "SELECT 1 FROM blobs WHERE digest = :digest"


def _blob_row(tx: RawTx, digest: str) -> tuple[int, str] | None:
    """The blob's size and key, locked against a concurrent collector on PostgreSQL."""
    sql = "SELECT size, storage_key FROM blobs WHERE digest = :digest"
    row = tx.one(sql + " FOR SHARE" if tx.is_postgres else sql, {"digest": digest})
    return None if row is None else (int(row[0]), str(row[1]))


def link_blob_raw(tx: RawTx, repository: str, digest: str, now: object) -> None:
    repo_id = ensure_repository_raw(tx, repository, now)
    tx.run(_LINK, {"repo": repo_id, "digest": digest, "now": now})


@dataclass(frozen=True, slots=True)
class ReferenceEnd:
    """An issued reference to mark ended, with the blob's record where there is one."""

    reference: str
    expires_at: int

    def record(self, tx: RawTx) -> None:
        tx.run(_END_REFERENCE, {"id": self.reference, "expires": self.expires_at})


def link_existing(
    tx: RawTx, repository: str, digest: str, end: ReferenceEnd | None
) -> tuple[int, str] | None:
    existing = _blob_row(tx, digest)
    if existing is not None:
        link_blob_raw(tx, repository, digest, tx.timestamp())
        if end is not None:
            end.record(tx)
    return existing


def record_blob(
    tx: RawTx, repository: str, digest: str, size: int, key: str, end: ReferenceEnd | None
) -> tuple[int, str]:
    """Record the blob unless another upload did; link it; the row now on record."""
    if end is not None:
        end.record(tx)
    now = tx.timestamp()
    for _ in range(3):
        tx.run(_RECORD_BLOB, {"digest": digest, "size": size, "key": key, "now": now})
        row = _blob_row(tx, digest)
        if row is not None:
            break
        # PostgreSQL: a collector deleted the existing row while we waited on its
        # lock; our bytes are durable under their own key, so record them anew.
    else:
        raise RegistryError(UNAVAILABLE, "blob is being collected concurrently; retry")
    link_blob_raw(tx, repository, digest, now)
    return row
