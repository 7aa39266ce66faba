"""Resumable blob uploads whose whole state lives in the database and storage.

An upload row records the driver's durable state, the byte count and the
saved hash context, so any process can continue an upload and a restart
loses no acknowledged byte. A single-request (monolithic) upload records no
row at all: nothing is acknowledged until its blob is committed. Nor does
POST: its reference stands for an empty session (registry.domain.upload_refs)
until a PATCH stores bytes, and a PUT with the whole blob is a single-request
upload that also ends the reference (upload_ends).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
import uuid

from registry.db.engine import Database
from registry.db.raw import RawTx
from registry.domain.digests import Digest
from registry.domain.errors import (
    DIGEST_INVALID,
    RegistryError,
)
from registry.domain.hashing import Hasher, new_hasher
from registry.domain.upload_refs import (
    issue_reference,
)
from registry.services.blobs import BlobInfo
from registry.services.upload_appender import (
    LEASE_SECONDS,
    NO_STORAGE,
    SessionRecord,
    busy_error,
    copy_into_fresh_upload,
    driver_errors,
    fresh_empty_upload,
    release_lease,
    reopen_session,
)
from registry.services.upload_appender import Appender as Appender
from registry.services.upload_appender import UploadStatus as UploadStatus
from registry.services.upload_rows import (
    BLOB_EXISTS,
    CLAIM_ROW,
    TAKE_LEASE,
    ReferenceEnd,
    SessionRow,
    link_existing,
    record_blob,
)
from registry.services.upload_sessions import Sessions
from storage.driver import (
    Driver,
    StorageError,
    StorageUnavailable,
    UploadState,
)


class UploadService:
    def __init__(self, db: Database, driver: Driver, session_lifetime: float = 24 * 3600) -> None:
        self.db = db
        self.driver = driver
        self.sessions = Sessions(db, driver, session_lifetime)

    def _start_driver(self, upload_id: str) -> UploadState:
        with driver_errors():
            return self.driver.start_upload(upload_id)

    def start(self, repository: str, subject: str | None) -> UploadStatus:
        """A new empty session: a reference only, nothing written anywhere."""
        return UploadStatus(issue_reference(repository, subject, time.time()), repository, 0)

    def open_direct(self, repository: str, algorithm: str, ends: str | None = None) -> Appender:
        """A one-request upload: no row until the blob itself is committed. ``ends``:
        the issued reference whose empty session this upload completes."""
        upload_id = uuid.uuid4().hex
        state = self._start_driver(upload_id)
        with driver_errors():
            writer = self.driver.resume_upload(state)
        return Appender(
            self.db,
            self.driver,
            upload_id,
            repository,
            0,
            writer,
            new_hasher(algorithm),
            recorded=False,
            initial_state=state,
            ends=ends,
        )

    def status(self, repository: str, upload_id: str, subject: str | None) -> UploadStatus:
        row = self.sessions.resolve(repository, upload_id, subject)
        return UploadStatus(upload_id, repository, 0 if row is None else row.size)

    def open_append(
        self, repository: str, upload_id: str, subject: str | None, start: int | None
    ) -> Appender:
        """Take the session's lease to append (a PATCH); ``start`` (from Content-Range)
        must equal the current size. The row stays as recorded until the request records
        a new state (PATCH) or its commit ends the session (final PUT), so a request that
        fails before then, its process included, leaves the session as it was."""
        row = self.sessions.resolve(repository, upload_id, subject)
        if row is None:
            self.sessions.check_start(repository, upload_id, 0, start)
            recorded = self.sessions.record_empty(repository, upload_id, subject)
            if recorded is not None:
                return self._lease(*recorded, repository=repository, start=start)
            # Another request recorded it first: go on as on any recorded session.
            row = self.sessions.resolve(repository, upload_id, subject)
            if row is None:
                raise busy_error(upload_id, repository, 0)
        return self._lease(row, None, repository=repository, start=start)

    def open_final(
        self,
        repository: str,
        upload_id: str,
        subject: str | None,
        start: int | None,
        algorithm: str,
    ) -> Appender:
        """Append a final PUT's chunk: onto the recorded session, or for an empty one
        (no row) as a one-request upload that ends its reference when it commits; a
        request that fails before then leaves the empty session as it was."""
        row = self.sessions.resolve(repository, upload_id, subject)
        if row is not None:
            return self._lease(row, None, repository=repository, start=start)
        self.sessions.check_start(repository, upload_id, 0, start)
        return self.open_direct(repository, algorithm, ends=upload_id)

    def _lease(
        self, row: SessionRow, lease: str | None, *, repository: str, start: int | None
    ) -> Appender:
        """An appender on ``row`` under ``lease``, taken now when None."""
        self.sessions.check_start(repository, row.id, row.size, start)
        upload_id = row.id
        if lease is None:
            lease = uuid.uuid4().hex
            params = {"lease": lease, "id": row.id, "size": row.size}
            taken = self.db.run_raw(lambda tx: tx.run_clocked(TAKE_LEASE, params, LEASE_SECONDS))
            if not taken:
                raise busy_error(row.id, repository, row.size)
        if row.driver_state == NO_STORAGE:
            row = self.sessions.start_storage(row, lease)
        hasher: Hasher | None = None
        if row.hash_state is not None:
            hasher = new_hasher(row.hash_algorithm, row.hash_state)
        try:
            with driver_errors(upload_id):
                writer = self.driver.resume_upload(row.state)
        except RegistryError:
            # Only a driver error lands here: give the lease back before answering.
            release_lease(self.db, row.id, lease)
            raise
        return Appender(
            self.db,
            self.driver,
            row.id,
            repository,
            row.size,
            writer,
            hasher,
            recorded=True,
            lease=lease,
            session=row.record,
        )

    def _commit_storage(self, state: UploadState, digest: Digest, upload_id: str) -> str:
        with driver_errors(upload_id):
            return self.driver.commit_upload(state, f"{digest.storage_key}.{upload_id}")

    def _hash_object(self, key: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        with driver_errors():
            for chunk in self.driver.read(key):
                hasher.update(chunk)
        return hasher.hexdigest()

    def complete(
        self, repository: str, upload_id: str, subject: str | None, digest: Digest
    ) -> BlobInfo:
        """Verify the digest, make the blob durable and visible, end the session."""
        row = self.sessions.resolve(repository, upload_id, subject)
        if row is None or row.driver_state == NO_STORAGE:
            # An empty session completed without a body: the empty blob, or a wrong digest.
            # (A row without storage is left to the stale purge; the reference ends.)
            return self._write_and_complete(
                self.open_direct(repository, digest.algorithm, ends=upload_id), b"", digest
            )
        actual: str | None = None  # None: hash the committed object instead
        if row.hash_state is not None and row.hash_algorithm == digest.algorithm:
            actual = new_hasher(digest.algorithm, row.hash_state).hexdigest()
        return self._commit(
            repository, row.id, row.state, actual, digest, recorded=True, lease=None,
            restore=row.record,
        )  # fmt: skip

    def put_small(
        self,
        repository: str,
        upload_id: str,
        subject: str | None,
        start: int | None,
        data: bytes,
        digest: Digest,
    ) -> BlobInfo:
        """A final chunk already in memory, appended and committed in one blocking call
        (one thread hand-off instead of three for the many small layers)."""
        appender = self.open_final(repository, upload_id, subject, start, digest.algorithm)
        return self._write_and_complete(appender, data, digest)

    def put_direct(self, repository: str, data: bytes, digest: Digest) -> BlobInfo:
        """A whole single-request blob already in memory."""
        return self._write_and_complete(
            self.open_direct(repository, digest.algorithm), data, digest
        )

    def _write_and_complete(self, appender: Appender, data: bytes, digest: Digest) -> BlobInfo:
        try:
            if data:
                appender.write(data)
            return self.complete_appender(appender, digest)
        except BaseException:
            appender.abandon()
            raise

    def complete_appender(self, appender: Appender, digest: Digest) -> BlobInfo:
        """Finish an upload whose last bytes this request just wrote.

        The intermediate state is never recorded: the client gets no answer
        until the blob itself is committed. If that fails, the session is put
        back as recorded before this request (without its bytes), for a retry.
        """
        state = appender.close_writer(final=True)
        actual: str | None = None  # None: hash the committed object instead
        if appender.hasher is not None and appender.hasher.algorithm == digest.algorithm:
            actual = appender.hasher.hexdigest()
        return self._commit(
            appender.repository,
            appender.upload_id,
            state,
            actual,
            digest,
            recorded=appender.recorded,
            lease=appender.lease,
            recorded_size=appender.start,
            restore=appender.session,
            ends=appender.ends,
        )

    def _commit(
        self,
        repository: str,
        upload_id: str,
        state: UploadState,
        actual_hex: str | None,
        digest: Digest,
        *,
        recorded: bool,
        lease: str | None,
        recorded_size: int | None = None,
        restore: SessionRecord | None = None,
        ends: str | None = None,
    ) -> BlobInfo:
        """Verify, commit and record the blob; a recorded session is ended first.

        ``restore``: the claimed row as it was, put back if the request then fails
        (a 503 or 507 of the storage commit, say) for any reason but a wrong digest,
        so nothing acknowledged is lost. A wrong digest ends the upload, as in CNCF
        distribution (its failed Commit cancels): the bytes are known wrong.
        ``ends``: the issued reference a one-request upload completes (else
        ``upload_id`` is the session's own): a recorded session's ends with its claim,
        a one-request upload's with the blob's record.
        """
        end = self.sessions.end_of(ends or upload_id)
        if recorded:
            size = state.size if recorded_size is None else recorded_size
            self._claim(repository, upload_id, size, lease, end)
            end = None  # marked by the claim
        committed: list[str] = []  # the storage commit's key, once it took effect
        try:
            return self._commit_claimed(
                repository, upload_id, state, actual_hex, digest, committed, end
            )
        except BaseException as exc:
            wrong = isinstance(exc, RegistryError) and exc.code is DIGEST_INVALID
            if recorded and restore is not None and not wrong:
                # A last chunk this request appended went into the commit with the rest.
                appended = bool(committed) and state.size != restore.state.size
                self._restore(repository, upload_id, restore, committed[0] if appended else None)
            raise

    def _mark_ended(self, end: ReferenceEnd | None) -> None:
        """Best effort, on a failure path: a reference that stays unended only looks
        like a fresh empty session, whose PATCH at a later offset is refused."""
        if end is not None:
            with contextlib.suppress(Exception), self.db.raw_transaction() as tx:
                end.record(tx)

    def _restore(
        self, repository: str, upload_id: str, record: SessionRecord, consumed_by: str | None
    ) -> None:
        """Put back a session whose commit failed, so the client's retry finds it.

        Drivers make a retried commit succeed even where the failed one took effect;
        an empty session gets a fresh driver upload under its id instead, as its
        retry sends the bytes again and the commit may have consumed the first one.
        ``consumed_by``: the object a commit that took effect made of the recorded
        bytes and a last chunk; the retry resends only that chunk, so the recorded
        bytes are copied back into a fresh upload (else the retry found none: 404).
        Best effort: the client gets the request's own error either way. Where no
        upload holding the recorded bytes can be had, no row is put back: one naming
        consumed or partial bytes would look alive and still fail the retry, which now
        gets BLOB_UPLOAD_UNKNOWN at once (the client pushes the blob again).
        """
        state = record.state
        try:
            if state.size == 0:
                state = fresh_empty_upload(self.driver, upload_id, state)
            elif consumed_by is not None:
                state = copy_into_fresh_upload(self.driver, upload_id, record.state, consumed_by)
        except Exception:
            return
        with contextlib.suppress(Exception):
            reopen_session(self.db, upload_id, repository, dataclasses.replace(record, state=state))

    def _commit_claimed(
        self,
        repository: str,
        upload_id: str,
        state: UploadState,
        actual_hex: str | None,
        digest: Digest,
        committed_keys: list[str],
        end: ReferenceEnd | None,
    ) -> BlobInfo:
        """``committed_keys`` gets the storage commit's key as soon as it took effect."""
        committed: str | None = None
        if actual_hex is None:
            # No hash state for this algorithm (e.g. a sha512 digest for an upload
            # hashed as sha256). Upload bytes may not be readable (S3 multipart),
            # so commit first, hash the object, and drop it if it does not match.
            committed = self._commit_storage(state, digest, upload_id)
            committed_keys.append(committed)
            actual_hex = self._hash_object(committed, digest.algorithm)
            if actual_hex != digest.hex:
                with contextlib.suppress(StorageError):
                    self.driver.delete(committed)
        if actual_hex != digest.hex:
            self._discard(upload_id, state, recorded=False)
            self._mark_ended(end)
            raise RegistryError(
                DIGEST_INVALID,
                "provided digest did not match uploaded content",
                detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual_hex}"},
            )
        digest_text = str(digest)
        # Fast path: the blob already exists; link it and drop our copy. The
        # cheap unlocked look is confirmed under the write lock.
        existing = None
        if self.db.fetch_one(BLOB_EXISTS, {"digest": digest_text}) is not None:
            existing = self.db.run_raw(lambda tx: link_existing(tx, repository, digest_text, end))
        if existing is not None:
            with contextlib.suppress(StorageError):
                if committed is not None:
                    self.driver.delete(committed)
                else:
                    self.driver.abort_upload(state)
            return BlobInfo(digest_text, existing[0], existing[1])
        # Each upload commits under its own key, so a collector deleting an
        # older copy of the same digest can never remove these bytes.
        key = committed or self._commit_storage(state, digest, upload_id)
        committed_keys.append(key)
        recorded_row = self.db.run_raw(
            lambda tx: record_blob(tx, repository, digest_text, state.size, key, end)
        )
        if recorded_row[1] != key:
            # Another upload of the same content won the race; ours is redundant.
            with contextlib.suppress(StorageError):
                self.driver.delete(key)
        return BlobInfo(digest_text, recorded_row[0], recorded_row[1])

    def _claim(
        self,
        repository: str,
        upload_id: str,
        size: int,
        lease: str | None,
        end: ReferenceEnd | None,
    ) -> None:
        """End the session row before touching storage, unless another request writes it;
        its reference ends with it (a restore reopens it), so a crash after this leaves
        only orphaned upload bytes, which GC purges, not a reference that looks fresh.
        """
        params = {"id": upload_id, "size": size, "lease": lease}

        def claim(tx: RawTx) -> int:
            claimed = tx.run_clocked(CLAIM_ROW, params)
            if claimed and end is not None:
                end.record(tx)
            return claimed

        claimed = self.db.run_raw(claim)
        if not claimed:
            raise busy_error(upload_id, repository, size)

    def cancel(self, repository: str, upload_id: str, subject: str | None) -> None:
        row = self.sessions.resolve(repository, upload_id, subject)
        end = self.sessions.end_of(upload_id)
        if row is None:
            assert end is not None  # only an issued reference resolves to no row
            with self.db.raw_transaction() as tx:
                end.record(tx)
            return
        self._discard(row.id, row.state, recorded=True, end=end)

    def _discard(
        self, upload_id: str, state: UploadState, recorded: bool, end: ReferenceEnd | None = None
    ) -> None:
        if recorded:
            with self.db.raw_transaction() as tx:
                tx.run("DELETE FROM upload_sessions WHERE id = :id", {"id": upload_id})
                if end is not None:
                    end.record(tx)
        # On failure the stale-upload purge retries later.
        if state.token != NO_STORAGE:
            with contextlib.suppress(StorageUnavailable):
                self.driver.abort_upload(state)

    def stale_sessions(self, older_than: dt.datetime) -> list[str]:
        rows = self.db.fetch_all(
            "SELECT id FROM upload_sessions WHERE updated_at < :cutoff",
            {"cutoff": older_than.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
             if self.db.is_sqlite else older_than},
        )  # fmt: skip
        return [str(r[0]) for r in rows]
