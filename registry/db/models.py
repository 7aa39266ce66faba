"""SQLAlchemy 2 typed models: the truth of what exists.

Blob bytes live in storage; a row may point at bytes only once they are durable.
Manifest bytes live in their row (migration 0009); older rows point at storage.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_push_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Blob(Base):
    """A content-addressed blob whose bytes are durable in storage."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(200), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # Drivers that cannot rename keep bytes under their own key (see storage.driver).
    storage_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RepositoryBlob(Base):
    """A blob is visible in a repository only through this link."""

    __tablename__ = "repository_blobs"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    blob_digest: Mapped[str] = mapped_column(
        ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_repository_blobs_blob_digest", "blob_digest"),)


# Manifest bytes are either in the row or in storage, never both or neither.
MANIFEST_ONE_SOURCE = "(payload IS NULL) <> (storage_key IS NULL)"


class Manifest(Base):
    __tablename__ = "manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(255))
    artifact_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # The exact pushed bytes: in the row (``payload``, since migration 0009), or in
    # storage under ``storage_key`` (manifests pushed before it). Exactly one is set.
    storage_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    config_digest: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject_digest: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Annotations of the manifest, JSON text; the referrers API reports them.
    annotations: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_pulled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
        CheckConstraint(MANIFEST_ONE_SOURCE, name="one_source"),
        Index("ix_manifests_repository_subject", "repository_id", "subject_digest"),
        Index("ix_manifests_digest", "digest"),
    )


class ManifestBlob(Base):
    """Config and layer blobs a manifest references."""

    __tablename__ = "manifest_blobs"

    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    blob_digest: Mapped[str] = mapped_column(
        ForeignKey("blobs.digest", ondelete="RESTRICT"), primary_key=True
    )

    __table_args__ = (Index("ix_manifest_blobs_blob_digest", "blob_digest"),)


class ManifestReference(Base):
    """An index's child manifests, by digest within the same repository."""

    __tablename__ = "manifest_references"

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    child_digest: Mapped[str] = mapped_column(String(200), primary_key=True)

    __table_args__ = (Index("ix_manifest_references_child_digest", "child_digest"),)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("repository_id", "name", name="uq_tags_repository_name"),
        Index("ix_tags_manifest_id", "manifest_id"),
    )


class UploadSession(Base):
    """A resumable blob upload; everything needed to continue it in any process."""

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository_name: Mapped[str] = mapped_column(String(255))
    # Who started it; only they may continue it once auth is on.
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    driver_state: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    hash_algorithm: Mapped[str] = mapped_column(String(16), default="sha256")
    # Saved hash context; NULL means "rehash stored bytes on completion".
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # One request at a time may write an upload: it holds this lease (renewed
    # while it streams); a crashed holder's lease simply expires.
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_upload_sessions_updated_at", "updated_at"),)


class UploadEnd(Base):
    """An issued upload reference (registry.domain.upload_refs) that was completed or
    cancelled: a session POST never recorded, so only this refuses its reuse."""

    __tablename__ = "upload_ends"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Epoch seconds; past it the reference is refused as too old anyway.
    expires_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_upload_ends_expires_at", "expires_at"),)


# -- online garbage collection (migration 0002) -------------------------------
# Review times are epoch seconds so database triggers on SQLite and PostgreSQL
# can write them with plain arithmetic; the grace delay is applied by workers.


# Append-only since migration 0007: triggers insert one row per event (an insert
# never waits on another transaction); collectors delete the rows they review.
_EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: the rowid


class GcBlobReview(Base):
    """An event at ``event_at`` that may have made a blob or link garbage."""

    __tablename__ = "gc_blob_reviews"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(200))
    event_at: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_gc_blob_reviews_event_at", "event_at"),
        Index("ix_gc_blob_reviews_digest", "digest"),
    )


class GcManifestReview(Base):
    """An event for a manifest that may now be unreferenced (no FK: it may be gone)."""

    __tablename__ = "gc_manifest_reviews"

    id: Mapped[int] = mapped_column(_EVENT_ID, primary_key=True, autoincrement=True)
    manifest_id: Mapped[int] = mapped_column(Integer)
    event_at: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_gc_manifest_reviews_event_at", "event_at"),
        Index("ix_gc_manifest_reviews_manifest_id", "manifest_id"),
    )


class GcStorageDeletion(Base):
    """Bytes whose row is gone; deleted after commit, retried if a process died first."""

    __tablename__ = "gc_storage_deletions"

    storage_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    queued_at: Mapped[float] = mapped_column(Float)


class GcOrphan(Base):
    """Storage objects or uploads first seen without a row; removed once old enough."""

    __tablename__ = "gc_orphans"

    key: Mapped[str] = mapped_column(String(1100), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Float)


class GcRun(Base):
    """History of collection passes, for operators and the admin API."""

    __tablename__ = "gc_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # "running", "ok", "failed", or "abandoned": its process died mid-pass (its lease
    # ran out by the database's clock; status queries report it, the next pass stores it).
    status: Mapped[str] = mapped_column(String(16))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[str] = mapped_column(String(16))
    manifests_deleted: Mapped[int] = mapped_column(Integer, default=0)
    blobs_deleted: Mapped[int] = mapped_column(Integer, default=0)
    links_deleted: Mapped[int] = mapped_column(Integer, default=0)
    uploads_deleted: Mapped[int] = mapped_column(Integer, default=0)
    objects_freed: Mapped[int] = mapped_column(Integer, default=0)
    bytes_freed: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A running pass renews this; past it, the pass is taken for dead.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_gc_runs_started_at", "started_at"),)


# -- admin API (migration 0003) ------------------------------------------------


class AuditEntry(Base):
    """One administrative action (deletion, retention apply, GC trigger): who, what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    # JSON text: what the action did (counts, digests, bytes).
    details: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_action", "action"))


class RetentionPolicy(Base):
    """Which tags and manifests of repositories matching ``repository_pattern`` may go."""

    __tablename__ = "retention_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # fnmatch-style, e.g. ``team/*``.
    repository_pattern: Mapped[str] = mapped_column(String(255))
    keep_newest: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keep_regex: Mapped[str | None] = mapped_column(String(512), nullable=True)
    delete_older_than_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    delete_untagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
