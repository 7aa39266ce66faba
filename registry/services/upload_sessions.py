"""Finding an upload's session: its recorded row, or, for a reference POST issued
(registry.domain.upload_refs), the empty session that reference stands for until its
first PATCH records a row. Also the end marks that keep an ended reference from
standing for an empty session again."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid

from registry.db.engine import Database
from registry.db.raw import RawTx
from registry.domain.errors import BLOB_UPLOAD_UNKNOWN, RANGE_INVALID, RegistryError
from registry.domain.hashing import new_hasher
from registry.domain.upload_refs import end_mark_expiry, is_issued_reference, verified_issue_time
from registry.services.upload_appender import (
    LEASE_SECONDS,
    NO_STORAGE,
    SessionRecord,
    busy_error,
    driver_errors,
    insert_session_tx,
    release_lease,
)
from registry.services.upload_rows import (
    SELECT_ISSUED,
    SELECT_ROW,
    SET_STORAGE,
    TAKE_LEASE,
    ReferenceEnd,
    SessionRow,
)
from storage.driver import Driver, StorageError, UploadState, UploadStateInvalid


class Sessions:
    def __init__(self, db: Database, driver: Driver, lifetime: float) -> None:
        self.db = db
        self.driver = driver
        # How long an issued reference stands for an empty session: as long as the
        # purge of abandoned uploads (upload_purge_after) leaves a recorded one.
        self.lifetime = lifetime

    def load(self, repository: str, upload_id: str, subject: str | None) -> SessionRow:
        found = self.db.fetch_one(SELECT_ROW, {"id": upload_id}) if len(upload_id) <= 64 else None
        row = None if found is None else SessionRow(*found)
        # A session is bound to its repository and to whoever started it.
        if (
            row is None
            or row.repository != repository
            or (row.subject is not None and row.subject != subject)
        ):
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:80]})
        return row

    def resolve(self, repository: str, upload_id: str, subject: str | None) -> SessionRow | None:
        """The session's row, or None for an issued reference without one (an empty
        session); BLOB_UPLOAD_UNKNOWN when neither, or when it ended or expired."""
        now = time.time()
        issued = verified_issue_time(upload_id, repository, subject, now)
        if issued is None:
            return self.load(repository, upload_id, subject)
        found = self.db.fetch_one(SELECT_ISSUED, {"id": upload_id})
        if found is not None and found[0] is None:
            if found[1] is not None:
                # The check value bound the reference to this repository and subject.
                return SessionRow(*found[1:])
            if now < issued + 1 + self.lifetime:  # issued: a whole second
                return None
        raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:80]})

    def end_of(self, reference: str | None) -> ReferenceEnd | None:
        if reference is None or not is_issued_reference(reference):
            return None
        return ReferenceEnd(reference, end_mark_expiry(reference, self.lifetime))

    @staticmethod
    def check_start(repository: str, upload_id: str, size: int, start: int | None) -> None:
        if start is not None and start != size:
            raise RegistryError(
                RANGE_INVALID,
                f"chunk starts at {start} but the upload has {size} bytes",
                headers={
                    "Range": f"0-{max(size - 1, 0)}",
                    "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
                    "Docker-Upload-UUID": upload_id,
                },
            )

    def record_empty(
        self, repository: str, upload_id: str, subject: str | None
    ) -> tuple[SessionRow, str] | None:
        """Record an issued reference's empty session for its first PATCH, leased to it
        (the row and its lease), or None if another request recorded it first.

        The row comes before any storage: of racing first PATCHes, the one whose insert
        lands writes, and the others find the row leased (416), as on any session."""
        lease = uuid.uuid4().hex
        empty = UploadState(NO_STORAGE, 0)
        record = SessionRecord(subject, "sha256", new_hasher("sha256").saved_state(), empty)

        def insert(tx: RawTx) -> None:
            insert_session_tx(tx, upload_id, repository, record)
            tx.run_clocked(TAKE_LEASE, {"lease": lease, "id": upload_id, "size": 0}, LEASE_SECONDS)

        try:
            self.db.run_raw(insert)
        except Exception:
            if self.db.fetch_one(SELECT_ROW, {"id": upload_id}) is not None:
                return None
            raise
        row = SessionRow(upload_id, repository, subject, NO_STORAGE, 0, "sha256", record.hash_state)
        return row, lease

    def start_storage(self, row: SessionRow, lease: str) -> SessionRow:
        """Start the storage of a session recorded without it, under the session's lease,
        and record the driver's state before a byte goes there."""
        try:
            state = self.driver.start_upload(row.id)
        except UploadStateInvalid as exc:
            # A first PATCH died between starting the storage and recording it; nothing
            # was acknowledged. Only PATCHes are refused (a whole-blob PUT needs no
            # storage under the reference); GC purges the storage as an orphan.
            with self.db.raw_transaction() as tx:
                tx.run("DELETE FROM upload_sessions WHERE id = :id", {"id": row.id})
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": row.id}) from exc
        except StorageError:
            release_lease(self.db, row.id, lease)
            with driver_errors():
                raise
        params = {"state": state.token, "id": row.id, "lease": lease}
        try:
            recorded = self.db.run_raw(lambda tx: tx.run(SET_STORAGE, params))
        except BaseException:
            recorded = 0
            raise
        finally:
            if not recorded:
                with contextlib.suppress(StorageError):
                    self.driver.abort_upload(state)
                release_lease(self.db, row.id, lease)
        if not recorded:
            raise busy_error(row.id, row.repository, 0)
        return dataclasses.replace(row, driver_state=state.token)
