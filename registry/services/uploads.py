"""Resumable blob uploads whose whole state lives in the database and storage.

An upload row records the driver's durable state, the byte count and the
saved hash context, so any process can continue an upload and a restart
loses no acknowledged byte. A single-request (monolithic) upload records no
row at all: nothing is acknowledged until its blob is committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

from registry.db.engine import Database
from registry.db.raw import ClockedSql, RawTx
from registry.domain.digests import Digest
from registry.domain.errors import (
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    RANGE_INVALID,
    UNAVAILABLE,
    RegistryError,
)
from registry.domain.hashing import Hasher, new_hasher
from registry.services.blobs import BlobInfo
from registry.services.repositories import ensure_repository_raw
from registry.services.upload_appender import (
    LEASE_SECONDS,
    SessionRecord,
    busy_error,
    driver_errors,
    insert_session,
    release_lease,
)
from registry.services.upload_appender import Appender as Appender
from registry.services.upload_appender import UploadStatus as UploadStatus
from storage.driver import Driver, StorageError, StorageUnavailable, UploadState


@dataclass(frozen=True, slots=True)
class _Row:
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


_SELECT_ROW = (
    "SELECT id, repository_name, subject, driver_state, size, hash_algorithm, hash_state"
    " FROM upload_sessions WHERE id = :id"
)
# Lease times are on the database's clock (see ClockedSql): replicas whose clocks
# disagree must not take over a live lease, nor keep writing on an expired one.
_TAKE_LEASE = ClockedSql(
    "UPDATE upload_sessions SET lease_token = :lease, lease_expires_at = {expires}"
    " WHERE id = :id AND size = :size AND (lease_token IS NULL OR lease_expires_at < {now})"
)
# Ending a session claims its row first: no other request may be writing it.
_CLAIM_ROW = ClockedSql(
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


_BLOB_EXISTS = "SELECT 1 FROM blobs WHERE digest = :digest"


def _blob_row(tx: RawTx, digest: str) -> tuple[int, str] | None:
    """The blob's size and key, locked against a concurrent collector on PostgreSQL."""
    sql = "SELECT size, storage_key FROM blobs WHERE digest = :digest"
    row = tx.one(sql + " FOR SHARE" if tx.is_postgres else sql, {"digest": digest})
    return None if row is None else (int(row[0]), str(row[1]))


def link_blob_raw(tx: RawTx, repository: str, digest: str, now: object) -> None:
    repo_id = ensure_repository_raw(tx, repository, now)
    tx.run(_LINK, {"repo": repo_id, "digest": digest, "now": now})


def _link_existing(tx: RawTx, repository: str, digest: str) -> tuple[int, str] | None:
    existing = _blob_row(tx, digest)
    if existing is not None:
        link_blob_raw(tx, repository, digest, tx.timestamp())
    return existing


def _record_blob(tx: RawTx, repository: str, digest: str, size: int, key: str) -> tuple[int, str]:
    """Record the blob unless another upload did; link it; the row now on record."""
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


class UploadService:
    def __init__(self, db: Database, driver: Driver) -> None:
        self.db = db
        self.driver = driver

    def _load(self, repository: str, upload_id: str, subject: str | None) -> _Row:
        found = self.db.fetch_one(_SELECT_ROW, {"id": upload_id}) if len(upload_id) <= 64 else None
        row = None if found is None else _Row(*found)
        # A session is bound to its repository and to whoever started it.
        if (
            row is None
            or row.repository != repository
            or (row.subject is not None and row.subject != subject)
        ):
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:80]})
        return row

    def _start_driver(self, upload_id: str) -> UploadState:
        with driver_errors():
            return self.driver.start_upload(upload_id)

    def start(
        self, repository: str, subject: str | None, algorithm: str = "sha256"
    ) -> UploadStatus:
        upload_id = uuid.uuid4().hex
        state = self._start_driver(upload_id)
        record = SessionRecord(subject, algorithm, new_hasher(algorithm).saved_state(), state)
        try:
            insert_session(self.db, upload_id, repository, record)
        except Exception:
            # No row will ever point to these storage bytes (a full disk, say): drop them.
            with contextlib.suppress(StorageError):
                self.driver.abort_upload(state)
            raise
        return UploadStatus(upload_id, repository, 0)

    def open_direct(self, repository: str, algorithm: str) -> Appender:
        """A one-request upload: no row until the blob itself is committed."""
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
        )

    def status(self, repository: str, upload_id: str, subject: str | None) -> UploadStatus:
        row = self._load(repository, upload_id, subject)
        return UploadStatus(row.id, repository, row.size)

    def open_append(
        self, repository: str, upload_id: str, subject: str | None, start: int | None
    ) -> Appender:
        """Take the session's lease to append; ``start`` (from Content-Range) must equal
        the current size. The row stays as recorded until the request records a new
        state (PATCH) or its commit ends the session (final PUT), so a request that
        fails before then, its process included, leaves the session as it was."""
        row = self._load(repository, upload_id, subject)
        if start is not None and start != row.size:
            raise RegistryError(
                RANGE_INVALID,
                f"chunk starts at {start} but the upload has {row.size} bytes",
                headers={
                    "Range": f"0-{max(row.size - 1, 0)}",
                    "Location": f"/v2/{repository}/blobs/uploads/{row.id}",
                    "Docker-Upload-UUID": row.id,
                },
            )
        lease = uuid.uuid4().hex
        params = {"lease": lease, "id": row.id, "size": row.size}
        taken = self.db.run_raw(lambda tx: tx.run_clocked(_TAKE_LEASE, params, LEASE_SECONDS))
        if not taken:
            raise busy_error(row.id, repository, row.size)
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
        row = self._load(repository, upload_id, subject)
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
        return self._write_and_complete(
            self.open_append(repository, upload_id, subject, start), data, digest
        )

    def put_direct(self, repository: str, data: bytes, digest: Digest) -> BlobInfo:
        """A whole single-request blob already in memory."""
        return self._write_and_complete(
            self.open_direct(repository, digest.algorithm), data, digest
        )

    def _write_and_complete(self, appender: Appender, data: bytes, digest: Digest) -> BlobInfo:
        try:
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
    ) -> BlobInfo:
        """Verify, commit and record the blob; a recorded session is ended first.

        ``restore``: the claimed row as it was, put back if the request then fails
        (a 503 or 507 of the storage commit, say) for any reason but a wrong digest,
        so nothing acknowledged is lost. A wrong digest ends the upload, as in CNCF
        distribution (its failed Commit cancels): the bytes are known wrong.
        """
        if recorded:
            size = state.size if recorded_size is None else recorded_size
            self._claim(repository, upload_id, size, lease)
        committed: list[str] = []  # the storage commit's key, once it took effect
        try:
            return self._commit_claimed(repository, upload_id, state, actual_hex, digest, committed)
        except BaseException as exc:
            wrong = isinstance(exc, RegistryError) and exc.code is DIGEST_INVALID
            if recorded and restore is not None and not wrong:
                # A last chunk this request appended went into the commit with the rest.
                appended = bool(committed) and state.size != restore.state.size
                self._restore(repository, upload_id, restore, committed[0] if appended else None)
            raise

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
                state = self._fresh_empty_upload(upload_id, state)
            elif consumed_by is not None:
                state = self._copy_into_fresh_upload(upload_id, record.state, consumed_by)
        except Exception:
            return
        with contextlib.suppress(Exception):
            insert_session(self.db, upload_id, repository, dataclasses.replace(record, state=state))

    def _fresh_empty_upload(self, upload_id: str, first: UploadState) -> UploadState:
        try:
            self.driver.abort_upload(first)
        except StorageError:
            return first  # Storage refusing this most likely refused the commit too.
        return self.driver.start_upload(upload_id)

    def _copy_into_fresh_upload(
        self, upload_id: str, consumed: UploadState, key: str
    ) -> UploadState:
        """A new driver upload under ``upload_id`` holding the first ``consumed.size``
        bytes of ``key``, made durable (as a PATCH's close does); dropped if that fails.

        Leftovers of the consumed upload go first: on S3 a cleanup after the commit
        that failed leaves its tails, under which no new upload may start."""
        self.driver.abort_upload(consumed)
        fresh = self.driver.start_upload(upload_id)
        try:
            writer = self.driver.resume_upload(fresh)
            try:
                for chunk in self.driver.read(key, 0, consumed.size):
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
                self.driver.abort_upload(fresh)
            raise

    def _commit_claimed(
        self,
        repository: str,
        upload_id: str,
        state: UploadState,
        actual_hex: str | None,
        digest: Digest,
        committed_keys: list[str],
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
            raise RegistryError(
                DIGEST_INVALID,
                "provided digest did not match uploaded content",
                detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual_hex}"},
            )
        digest_text = str(digest)
        # Fast path: the blob already exists; link it and drop our copy. The
        # cheap unlocked look is confirmed under the write lock.
        existing = None
        if self.db.fetch_one(_BLOB_EXISTS, {"digest": digest_text}) is not None:
            existing = self.db.run_raw(lambda tx: _link_existing(tx, repository, digest_text))
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
            lambda tx: _record_blob(tx, repository, digest_text, state.size, key)
        )
        if recorded_row[1] != key:
            # Another upload of the same content won the race; ours is redundant.
            with contextlib.suppress(StorageError):
                self.driver.delete(key)
        return BlobInfo(digest_text, recorded_row[0], recorded_row[1])

    def _claim(self, repository: str, upload_id: str, size: int, lease: str | None) -> None:
        """End the session row before touching storage, unless another request writes it.

        A crash after this leaves only orphaned upload bytes, which GC purges.
        """
        params = {"id": upload_id, "size": size, "lease": lease}
        claimed = self.db.run_raw(lambda tx: tx.run_clocked(_CLAIM_ROW, params))
        if not claimed:
            raise busy_error(upload_id, repository, size)

    def cancel(self, repository: str, upload_id: str, subject: str | None) -> None:
        row = self._load(repository, upload_id, subject)
        self._discard(row.id, row.state, recorded=True)

    def _discard(self, upload_id: str, state: UploadState, recorded: bool) -> None:
        if recorded:
            with self.db.raw_transaction() as tx:
                tx.run("DELETE FROM upload_sessions WHERE id = :id", {"id": upload_id})
        # On failure the stale-upload purge retries later.
        with contextlib.suppress(StorageUnavailable):
            self.driver.abort_upload(state)

    def stale_sessions(self, older_than: dt.datetime) -> list[str]:
        rows = self.db.fetch_all(
            "SELECT id FROM upload_sessions WHERE updated_at < :cutoff",
            {"cutoff": older_than.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
             if self.db.is_sqlite else older_than},
        )  # fmt: skip
        return [str(r[0]) for r in rows]
