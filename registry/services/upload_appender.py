"""Appending one request's bytes to an upload, under a lease on its session row.

Also the helpers an upload service shares with it: the lease statements, the
"busy" answer, the mapping of driver errors to registry errors, and the fresh
uploads a failed commit's session is put back with.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from registry.db.engine import Database
from registry.db.raw import ClockedSql, RawTx
from registry.domain.errors import (
    BLOB_TOO_LARGE,
    BLOB_UPLOAD_UNKNOWN,
    RANGE_INVALID,
    STORAGE_FULL,
    UNAVAILABLE,
    RegistryError,
)
from registry.domain.hashing import Hasher
from storage.driver import (
    Driver,
    ObjectTooLarge,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UploadState,
    UploadStateInvalid,
    UploadWriter,
)


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    repository: str
    size: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a session row records: a final PUT that ended (deleted) it and then
    failed at its commit puts it back with this, so the client's retry finds it."""

    subject: str | None
    hash_algorithm: str
    hash_state: bytes | None
    state: UploadState


_INSERT_ROW = (
    "INSERT INTO upload_sessions (id, repository_name, subject, driver_state, size,"
    " hash_algorithm, hash_state, created_at, updated_at)"
    " VALUES (:id, :repo, :subject, :state, :size, :alg, :hash, :now, :now)"
)


# The driver state of a session row recorded before its storage was started (an
# issued reference's first PATCH records the row first, then starts the storage).
NO_STORAGE = ""

# A session put back after its commit failed: the claim that ended it ended its reference too.
_REOPEN_REFERENCE = "DELETE FROM upload_ends WHERE id = :id"


def reopen_session(db: Database, upload_id: str, repository: str, record: SessionRecord) -> None:
    """Put a claimed session's row back and drop its reference's end mark, at once."""

    def insert(tx: RawTx) -> None:
        insert_session_tx(tx, upload_id, repository, record)
        tx.run(_REOPEN_REFERENCE, {"id": upload_id})

    db.run_raw(insert)


def insert_session_tx(tx: RawTx, upload_id: str, repository: str, record: SessionRecord) -> None:
    params = {
        "id": upload_id,
        "repo": repository,
        "subject": record.subject,
        "state": record.state.token,
        "size": record.state.size,
        "alg": record.hash_algorithm,
        "hash": record.hash_state,
    }
    tx.run(_INSERT_ROW, {**params, "now": tx.timestamp()})


# Recorded only by the lease holder, and only over the size it started from.
_UPDATE_ROW = (
    "UPDATE upload_sessions SET driver_state = :state, size = :size, hash_state = :hash,"
    " updated_at = :now, lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = :id AND size = :start AND lease_token = :lease"
)
# Lease times are on the database's clock (see ClockedSql).
_RENEW_LEASE = ClockedSql(
    "UPDATE upload_sessions SET lease_expires_at = {expires}"
    " WHERE id = :id AND lease_token = :lease"
)
RELEASE_LEASE = (
    "UPDATE upload_sessions SET lease_token = NULL, lease_expires_at = NULL"
    " WHERE id = :id AND lease_token = :lease"
)
# A writer killed mid-request blocks its upload until the lease expires, so keep
# it short; a streaming writer renews it (one small transaction) before writing
# whenever RENEW_EVERY has passed, so it never writes on an expired lease.
LEASE_SECONDS = 30.0
RENEW_EVERY = 5.0


def release_lease(db: Database, upload_id: str, lease: str) -> None:
    """Give the lease back, best effort. A database that refuses this write (SQLite on a
    full disk) leaves the lease to expire, the same path as a crashed writer: upload
    state lives only in the database, never in one process's memory."""
    with contextlib.suppress(Exception), db.raw_transaction() as tx:
        tx.run(RELEASE_LEASE, {"id": upload_id, "lease": lease})


def busy_error(upload_id: str, repository: str, size: int) -> RegistryError:
    return RegistryError(
        RANGE_INVALID,
        "another request is writing this upload",
        detail={"upload": upload_id},
        headers={
            "Range": f"0-{max(size - 1, 0)}",
            "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
            "Docker-Upload-UUID": upload_id,
        },
    )


def _unavailable(exc: StorageError) -> RegistryError:
    if isinstance(exc, ObjectTooLarge):
        # A limit of the backend, not an outage: a retry cannot help.
        return RegistryError(BLOB_TOO_LARGE, str(exc))
    if isinstance(exc, StorageFull):
        return RegistryError(STORAGE_FULL, f"{STORAGE_FULL.message}: {exc}")
    return RegistryError(UNAVAILABLE, f"storage error: {exc}")


@contextlib.contextmanager
def driver_errors(upload_id: str | None = None) -> Iterator[None]:
    """Raise a driver's StorageError as the RegistryError a client gets.

    With ``upload_id``, a lost upload (UploadStateInvalid) is BLOB_UPLOAD_UNKNOWN;
    without it (no upload state involved yet) every driver error is an outage.
    """
    try:
        yield
    except UploadStateInvalid as exc:
        if upload_id is None:
            raise _unavailable(exc) from exc
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id}) from exc
    except StorageError as exc:
        raise _unavailable(exc) from exc


class Appender:
    """Appends one request's bytes to an upload; all methods block (run in threads)."""

    def __init__(
        self,
        db: Database,
        driver: Driver,
        upload_id: str,
        repository: str,
        start: int,
        writer: UploadWriter,
        hasher: Hasher | None,
        *,
        recorded: bool,
        initial_state: UploadState | None = None,
        lease: str | None = None,
        session: SessionRecord | None = None,
        ends: str | None = None,
    ) -> None:
        self._db = db
        self._driver = driver
        self.upload_id = upload_id
        self.repository = repository
        self.start = start
        self._writer = writer
        self.hasher = hasher
        self.size = start
        # A direct (single-request) upload has no row to update.
        self.recorded = recorded
        self._initial_state = initial_state
        self.lease = lease
        # The leased row as recorded, for a final PUT to put back if its commit fails.
        self.session = session
        # The issued reference a direct upload completes (see UploadService.open_final).
        self.ends = ends
        self._renewed_at = time.monotonic()

    def _renew(self) -> None:
        """Keep the lease while streaming; losing it means another writer may start."""
        self._renewed_at = time.monotonic()
        with self._db.raw_transaction() as tx:
            kept = tx.run_clocked(
                _RENEW_LEASE, {"id": self.upload_id, "lease": self.lease}, LEASE_SECONDS
            )
        if not kept:
            raise busy_error(self.upload_id, self.repository, self.start)

    def write(self, data: bytes) -> None:
        if self.lease is not None and time.monotonic() - self._renewed_at > RENEW_EVERY:
            self._renew()
        if self.hasher is not None:
            self.hasher.update(data)
        # A driver may find the upload gone only at its first write or close.
        with driver_errors(self.upload_id):
            self._writer.write(data)
        self.size += len(data)

    def abandon(self) -> None:
        """Stop writing and give the lease back: the row stays as last recorded."""
        with contextlib.suppress(StorageError):
            self._writer.abandon()
        if self.lease is not None:
            release_lease(self._db, self.upload_id, self.lease)
        elif not self.recorded and self._initial_state is not None:
            # Nothing refers to a direct upload: drop its bytes now.
            with contextlib.suppress(StorageError):
                self._driver.abort_upload(self._initial_state)

    def close_writer(self, final: bool = False) -> UploadState:
        with driver_errors(self.upload_id):
            return self._writer.close(final=final)

    def finish(self) -> UploadStatus:
        """Make the bytes durable, then record the new state; on failure, abandon.

        A driver may store bytes only at close (S3 puts the tail then), and the
        record may fail (a full database): either way the lease must go back now,
        not when it expires, or the client's retry is refused as busy.
        """
        try:
            state = self.close_writer()
            hash_state = self.hasher.saved_state() if self.hasher is not None else None
            params = {
                "state": state.token,
                "size": state.size,
                "hash": hash_state,
                "id": self.upload_id,
                "start": self.start,
                "lease": self.lease,
            }
            changed = self._db.run_raw(
                lambda tx: tx.run(_UPDATE_ROW, {**params, "now": tx.timestamp()})
            )
            if not changed:
                raise busy_error(self.upload_id, self.repository, self.start)
        except BaseException:
            self.abandon()
            raise
        return UploadStatus(self.upload_id, self.repository, state.size)


def fresh_empty_upload(driver: Driver, upload_id: str, first: UploadState) -> UploadState:
    """An empty session's upload anew under its id, as a failed commit may have consumed it."""
    try:
        driver.abort_upload(first)
    except StorageError:
        return first  # Storage refusing this most likely refused the commit too.
    return driver.start_upload(upload_id)


def copy_into_fresh_upload(
    driver: Driver, upload_id: str, consumed: UploadState, key: str
) -> UploadState:
    """A new driver upload under ``upload_id`` holding the first ``consumed.size``
    bytes of ``key``, made durable (as a PATCH's close does); dropped if that fails.

    Leftovers of the consumed upload go first: on S3 a cleanup after the commit
    that failed leaves its tails, under which no new upload may start."""
    driver.abort_upload(consumed)
    fresh = driver.start_upload(upload_id)
    try:
        writer = driver.resume_upload(fresh)
        try:
            for chunk in driver.read(key, 0, consumed.size):
                writer.write(chunk)
            copied = writer.close()
        except BaseException:
            writer.abandon()
            raise
        if copied.size != consumed.size:
            raise StorageUnavailable(
                f"{key!r} gave {copied.size} of the {consumed.size} recorded bytes"
            )
        return copied
    except BaseException:
        with contextlib.suppress(StorageError):
            driver.abort_upload(fresh)
        raise
