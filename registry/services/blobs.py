"""Blobs as seen through a repository: stat, read, link, mount, unlink."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from registry.db.engine import Database, rows_affected
from registry.db.models import Blob, Repository, RepositoryBlob, utcnow
from registry.domain.digests import Digest
from registry.domain.errors import BLOB_UNKNOWN, UNAVAILABLE, RegistryError
from registry.services.repositories import ensure_repository, find_repository_id
from storage.driver import Driver, ObjectNotFound, StorageUnavailable


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    storage_key: str


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def link_blob(session: Session, repository_id: int, digest: str) -> None:
    """Make an existing blob visible in a repository (idempotent)."""
    session.execute(
        _insert(session)(RepositoryBlob)
        .values(repository_id=repository_id, blob_digest=digest, created_at=utcnow())
        # A renewed link is spared by online GC for another grace period.
        .on_conflict_do_update(
            index_elements=["repository_id", "blob_digest"],
            set_={"created_at": utcnow()},
        )
    )


def record_blob(session: Session, digest: str, size: int, storage_key: str) -> str:
    """Insert the blob row unless it exists; return the storage key now on record."""
    session.execute(
        _insert(session)(Blob)
        .values(digest=digest, size=size, storage_key=storage_key, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["digest"])
    )
    key = session.scalar(select(Blob.storage_key).where(Blob.digest == digest))
    assert key is not None
    return key


def lock_blob(session: Session, digest: str) -> Blob | None:
    """Read a blob row, locking it against concurrent deletion where the DB can."""
    query = select(Blob).where(Blob.digest == digest)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return session.scalar(query)


# A blob is visible only through its link to the named repository.
_STAT = (
    "SELECT b.size, b.storage_key FROM blobs b"
    " JOIN repository_blobs rb ON rb.blob_digest = b.digest"
    " JOIN repositories r ON r.id = rb.repository_id"
    " WHERE r.name = :name AND b.digest = :digest"
)


class BlobService:
    def __init__(self, db: Database, driver: Driver) -> None:
        self.db = db
        self.driver = driver

    def stat(self, repository: str, digest: Digest, *, quick: bool = False) -> BlobInfo:
        """The blob as linked in ``repository``; BLOB_UNKNOWN otherwise.

        ``quick``: see Database.fetch_one_quick.
        """
        fetch = self.db.fetch_one_quick if quick else self.db.fetch_one
        row = fetch(_STAT, {"name": repository, "digest": str(digest)})
        if row is None:
            raise RegistryError(BLOB_UNKNOWN, detail={"digest": str(digest)})
        return BlobInfo(digest=str(digest), size=row[0], storage_key=row[1])

    def open(self, info: BlobInfo, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            return self.driver.read(info.storage_key, offset, length)
        except ObjectNotFound as exc:
            # The database says it exists but the bytes are gone: fsck territory.
            raise RegistryError(
                UNAVAILABLE, "blob data is missing from storage", detail={"digest": info.digest}
            ) from exc
        except StorageUnavailable as exc:
            raise RegistryError(UNAVAILABLE, str(exc)) from exc

    def redirect_url(self, info: BlobInfo, expires_in: int = 300) -> str | None:
        try:
            return self.driver.redirect_url(info.storage_key, expires_in)
        except StorageUnavailable as exc:
            raise RegistryError(UNAVAILABLE, str(exc)) from exc

    def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository; GC reclaims unreferenced bytes."""

        def unlink(session: Session) -> int:
            repo_id = find_repository_id(session, repository)
            if repo_id is None:
                return 0
            return rows_affected(
                session.execute(
                    delete(RepositoryBlob).where(
                        RepositoryBlob.repository_id == repo_id,
                        RepositoryBlob.blob_digest == str(digest),
                    )
                )
            )

        if not self.db.write_retrying(unlink):
            raise RegistryError(BLOB_UNKNOWN, detail={"digest": str(digest)})

    def mount(self, target: str, source: str, digest: Digest) -> BlobInfo | None:
        """Link a blob of ``source`` into ``target``; None when ``source`` lacks it.

        Callers must already have checked that the subject may pull ``source``.
        """
        query = (
            select(Blob.size, Blob.storage_key)
            .join(RepositoryBlob, RepositoryBlob.blob_digest == Blob.digest)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Repository.name == source, Blob.digest == str(digest))
        )
        if self.db.dialect == "postgresql":
            # Hold the blob against the online collector until the new link commits.
            query = query.with_for_update(read=True)

        def link(session: Session) -> BlobInfo | None:
            row = session.execute(query).first()
            if row is None:
                return None
            link_blob(session, ensure_repository(session, target), str(digest))
            return BlobInfo(digest=str(digest), size=row.size, storage_key=row.storage_key)

        # Shared locks on the source, then the target link's row lock: mounts and
        # deletes crossing in the other direction can deadlock (40P01); retry those.
        return self.db.write_retrying(link)
