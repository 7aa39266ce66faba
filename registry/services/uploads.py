"""Resumable blob uploads whose whole state lives in the database and storage.

An upload row records the driver's durable state, the byte count and the
saved hash context, so any process can continue an upload and a restart
loses no acknowledged byte.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from registry.db.engine import Database, rows_affected
from registry.db.models import UploadSession, utcnow
from registry.domain.digests import Digest
from registry.domain.errors import (
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    RANGE_INVALID,
    UNAVAILABLE,
    RegistryError,
)
from registry.domain.hashing import Hasher, new_hasher
from registry.services.blobs import BlobInfo, link_blob, lock_blob, record_blob
from registry.services.repositories import ensure_repository
from storage.driver import (
    Driver,
    StorageError,
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


def _unavailable(exc: StorageError) -> RegistryError:
    return RegistryError(UNAVAILABLE, f"storage error: {exc}")


class Appender:
    """Appends one request's bytes to an upload; all methods block (run in threads)."""

    def __init__(
        self,
        service: UploadService,
        row: UploadSession,
        writer: UploadWriter,
        hasher: Hasher | None,
    ) -> None:
        self._service = service
        self._row_id = row.id
        self._repository = row.repository_name
        self._start = row.size
        self._writer = writer
        self._hasher = hasher
        self.size = row.size

    @property
    def start(self) -> int:
        return self._start

    def write(self, data: bytes) -> None:
        if self._hasher is not None:
            self._hasher.update(data)
        try:
            self._writer.write(data)
        except StorageError as exc:
            raise _unavailable(exc) from exc
        self.size += len(data)

    def abandon(self) -> None:
        with contextlib.suppress(StorageError):
            self._writer.abandon()

    def finish(self) -> UploadStatus:
        """Make the bytes durable, then record the new state (compare-and-set on size)."""
        try:
            state = self._writer.close()
        except StorageError as exc:
            raise _unavailable(exc) from exc
        hash_state = self._hasher.saved_state() if self._hasher is not None else None
        with self._service.db.write() as session:
            changed = rows_affected(
                session.execute(
                    update(UploadSession)
                    .where(UploadSession.id == self._row_id, UploadSession.size == self._start)
                    .values(
                        driver_state=state.token,
                        size=state.size,
                        hash_state=hash_state,
                        updated_at=utcnow(),
                    )
                )
            )
        if not changed:
            raise RegistryError(
                RANGE_INVALID,
                "the upload was modified concurrently",
                detail={"upload": self._row_id},
            )
        return UploadStatus(self._row_id, self._repository, state.size)


class UploadService:
    def __init__(self, db: Database, driver: Driver) -> None:
        self.db = db
        self.driver = driver

    def _load(
        self, session: Session, repository: str, upload_id: str, subject: str | None
    ) -> UploadSession:
        row = session.get(UploadSession, upload_id) if len(upload_id) <= 64 else None
        # A session is bound to its repository and to whoever started it.
        if (
            row is None
            or row.repository_name != repository
            or (row.subject is not None and row.subject != subject)
        ):
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id[:80]})
        return row

    def start(
        self, repository: str, subject: str | None, algorithm: str = "sha256"
    ) -> UploadStatus:
        upload_id = uuid.uuid4().hex
        try:
            state = self.driver.start_upload(upload_id)
        except StorageError as exc:
            raise _unavailable(exc) from exc
        hasher = new_hasher(algorithm)
        with self.db.write() as session:
            session.add(
                UploadSession(
                    id=upload_id,
                    repository_name=repository,
                    subject=subject,
                    driver_state=state.token,
                    size=0,
                    hash_algorithm=algorithm,
                    hash_state=hasher.saved_state(),
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        return UploadStatus(upload_id, repository, 0)

    def status(self, repository: str, upload_id: str, subject: str | None) -> UploadStatus:
        with self.db.read() as session:
            row = self._load(session, repository, upload_id, subject)
            return UploadStatus(row.id, repository, row.size)

    def open_append(
        self, repository: str, upload_id: str, subject: str | None, start: int | None
    ) -> Appender:
        """Prepare to append; ``start`` (from Content-Range) must equal the current size."""
        with self.db.read() as session:
            row = self._load(session, repository, upload_id, subject)
        if start is not None and start != row.size:
            raise RegistryError(
                RANGE_INVALID,
                f"chunk starts at {start} but the upload has {row.size} bytes",
                headers={
                    "Range": f"0-{row.size - 1}",
                    "Location": f"/v2/{repository}/blobs/uploads/{row.id}",
                },
            )
        hasher: Hasher | None = None
        if row.hash_state is not None:
            hasher = new_hasher(row.hash_algorithm, row.hash_state)
        try:
            writer = self.driver.resume_upload(UploadState(row.driver_state, row.size))
        except UploadStateInvalid as exc:
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id}) from exc
        except StorageError as exc:
            raise _unavailable(exc) from exc
        return Appender(self, row, writer, hasher)

    def _final_digest(self, row: UploadSession, algorithm: str) -> str:
        if row.hash_state is not None and row.hash_algorithm == algorithm:
            return new_hasher(algorithm, row.hash_state).hexdigest()
        # No saved state for this algorithm: hash what storage holds.
        hasher = new_hasher(algorithm)
        try:
            for chunk in self.driver.read_upload(UploadState(row.driver_state, row.size)):
                hasher.update(chunk)
        except StorageError as exc:
            raise _unavailable(exc) from exc
        return hasher.hexdigest()

    def complete(
        self, repository: str, upload_id: str, subject: str | None, digest: Digest
    ) -> BlobInfo:
        """Verify the digest, make the blob durable and visible, end the session."""
        with self.db.read() as session:
            row = self._load(session, repository, upload_id, subject)
        state = UploadState(row.driver_state, row.size)
        actual = self._final_digest(row, digest.algorithm)
        if actual != digest.hex:
            self._discard(row.id, state)
            raise RegistryError(
                DIGEST_INVALID,
                "provided digest did not match uploaded content",
                detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
            )
        digest_text = str(digest)
        # Fast path: the blob already exists; link it and drop our copy.
        with self.db.write() as session:
            existing = lock_blob(session, digest_text)
            if existing is not None:
                repo_id = ensure_repository(session, repository)
                link_blob(session, repo_id, digest_text)
                session.execute(delete(UploadSession).where(UploadSession.id == row.id))
                info = BlobInfo(digest_text, existing.size, existing.storage_key)
        if existing is not None:
            with contextlib.suppress(StorageError):
                self.driver.abort_upload(state)
            return info
        # Each upload commits under its own key, so a collector deleting an
        # older copy of the same digest can never remove these bytes.
        target = f"{digest.storage_key}.{row.id}"
        try:
            key = self.driver.commit_upload(state, target)
        except UploadStateInvalid as exc:
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, detail={"upload": upload_id}) from exc
        except StorageError as exc:
            raise _unavailable(exc) from exc
        with self.db.write() as session:
            recorded = record_blob(session, digest_text, row.size, key)
            repo_id = ensure_repository(session, repository)
            link_blob(session, repo_id, digest_text)
            session.execute(delete(UploadSession).where(UploadSession.id == row.id))
        if recorded != key:
            # Another upload of the same content won the race; ours is redundant.
            with contextlib.suppress(StorageError):
                self.driver.delete(key)
        return BlobInfo(digest_text, row.size, recorded)

    def cancel(self, repository: str, upload_id: str, subject: str | None) -> None:
        with self.db.read() as session:
            row = self._load(session, repository, upload_id, subject)
        self._discard(row.id, UploadState(row.driver_state, row.size))

    def _discard(self, upload_id: str, state: UploadState) -> None:
        with self.db.write() as session:
            session.execute(delete(UploadSession).where(UploadSession.id == upload_id))
        # On failure the stale-upload purge retries later.
        with contextlib.suppress(StorageUnavailable):
            self.driver.abort_upload(state)

    def stale_sessions(self, older_than: dt.datetime) -> list[str]:
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(UploadSession.id).where(UploadSession.updated_at < older_than)
                )
            )
