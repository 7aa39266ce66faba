"""One garbage-collection review inside one write transaction.

Reviews are queued by database triggers (migration 0002) when a reference
disappears or an object is created. A review is taken only once its grace
delay has passed; the reference check is then repeated under row locks in
the same transaction that deletes rows, so a concurrent push either wins
(and the object is kept) or sees the object gone (and fails cleanly).
Bytes are queued in ``gc_storage_deletions`` in that transaction and deleted
after commit, so a process killed in between leaves work, not orphans.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from registry.db.models import utcnow

_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}


class ObjectBusy(Exception):
    """A row the review needs is locked by a live transaction (PostgreSQL NOWAIT)."""

    def __init__(self, table: str, column: str, value: Any) -> None:
        super().__init__(f"{table} {value} is busy")
        self.table, self.column, self.value = table, column, value


@dataclass
class TaskResult:
    """What one review did (or would do, in a dry run)."""

    found: bool = True
    manifests: int = 0
    blobs: int = 0
    links: int = 0
    keys: list[tuple[str, int]] = field(default_factory=list)


def now_sql(session: Session) -> str:
    return _NOW[session.get_bind().dialect.name]


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> float:
    return float(session.execute(text(f"SELECT {now_sql(session)}")).scalar_one())


def _lock(session: Session, sql: str, params: dict[str, Any], *, locking: bool) -> Any:
    """Run a SELECT, adding FOR UPDATE NOWAIT on PostgreSQL so GC never waits on a push."""
    if locking and is_postgres(session):
        try:
            return session.execute(text(sql + " FOR UPDATE NOWAIT"), params).all()
        except OperationalError as exc:
            if "lock" in str(exc.orig).lower():
                raise _Locked from exc
            raise
    return session.execute(text(sql), params).all()


class _Locked(Exception):
    pass


def _pick(session: Session, table: str, key: str, delay: float, locking: bool) -> Any:
    sql = (
        f"SELECT {key} FROM {table} WHERE event_at <= {now_sql(session)} - :delay"  # noqa: S608
        " ORDER BY event_at LIMIT 1"
    )
    if locking and is_postgres(session):
        sql += " FOR UPDATE SKIP LOCKED"  # other workers take other reviews
    return session.execute(text(sql), {"delay": delay}).scalar()


def _queue_bytes(session: Session, key: str, size: int) -> None:
    session.execute(
        text(
            "INSERT INTO gc_storage_deletions (storage_key, size, queued_at)"  # noqa: S608
            f" VALUES (:k, :s, {now_sql(session)}) ON CONFLICT (storage_key) DO NOTHING"
        ),
        {"k": key, "s": size},
    )


def review_manifest(session: Session, delay: float, *, locking: bool = True) -> TaskResult:
    """Delete the next due manifest unless a tag, a parent index or its subject keeps it."""
    manifest_id = _pick(session, "gc_manifest_reviews", "manifest_id", delay, locking)
    if manifest_id is None:
        return TaskResult(found=False)
    result = TaskResult()
    try:
        rows = _lock(
            session,
            "SELECT id, repository_id, digest, subject_digest, storage_key, size"
            " FROM manifests WHERE id = :id",
            {"id": manifest_id},
            locking=locking,
        )
    except _Locked as exc:
        raise ObjectBusy("gc_manifest_reviews", "manifest_id", manifest_id) from exc
    if rows and not _manifest_kept(session, rows[0]):
        _, _, _, _, key, size = rows[0]
        # The BEFORE DELETE trigger queues its blobs, children and referrers.
        session.execute(text("DELETE FROM manifests WHERE id = :id"), {"id": manifest_id})
        _queue_bytes(session, key, size)
        result.manifests = 1
        result.keys.append((key, size))
    session.execute(
        text("DELETE FROM gc_manifest_reviews WHERE manifest_id = :id"), {"id": manifest_id}
    )
    return result


def _manifest_kept(session: Session, row: Any) -> bool:
    manifest_id, repo_id, digest, subject, _key, _size = row
    params = {"id": manifest_id, "repo": repo_id, "digest": digest, "subject": subject}
    checks = [
        "SELECT 1 FROM tags WHERE manifest_id = :id",
        # A parent index in the same repository keeps its children.
        "SELECT 1 FROM manifest_references r JOIN manifests p ON p.id = r.parent_id"
        " WHERE r.child_digest = :digest AND p.repository_id = :repo",
    ]
    if subject is not None:
        # Referrers (signatures, SBOMs) live exactly as long as their subject.
        checks.append("SELECT 1 FROM manifests WHERE repository_id = :repo AND digest = :subject")
    return any(
        session.execute(text(sql + " LIMIT 1"), params).first() is not None for sql in checks
    )


def review_blob(session: Session, delay: float, *, locking: bool = True) -> TaskResult:
    """Drop repository links no manifest of that repository uses (after the grace
    period), then the blob itself once nothing links or references it."""
    digest = _pick(session, "gc_blob_reviews", "digest", delay, locking)
    if digest is None:
        return TaskResult(found=False)
    result = TaskResult()
    params = {"d": digest}
    # Lock the links first, then the blob, as manifest PUTs lock both FOR SHARE.
    try:
        links = _lock(
            session,
            "SELECT repository_id, created_at FROM repository_blobs WHERE blob_digest = :d",
            params,
            locking=locking,
        )
        blob = _lock(
            session,
            "SELECT size, storage_key FROM blobs WHERE digest = :d",
            params,
            locking=locking,
        )
    except _Locked as exc:
        raise ObjectBusy("gc_blob_reviews", "digest", digest) from exc
    recheck_at: float | None = None
    if blob:
        cutoff = utcnow() - dt.timedelta(seconds=delay)
        remaining = 0
        for repo_id, created_raw in links:
            created = _as_datetime(created_raw)
            used = session.execute(
                text(
                    "SELECT 1 FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id"
                    " WHERE mb.blob_digest = :d AND m.repository_id = :r LIMIT 1"
                ),
                {"d": digest, "r": repo_id},
            ).first()
            if used is not None:
                remaining += 1
            elif created > cutoff:
                # Pushed recently and not yet referenced: its manifest may be on the way.
                remaining += 1
                recheck_at = max(recheck_at or 0.0, created.timestamp())
            else:
                session.execute(
                    text(
                        "DELETE FROM repository_blobs WHERE repository_id = :r AND blob_digest = :d"
                    ),
                    {"d": digest, "r": repo_id},
                )
                result.links += 1
        referenced = session.execute(
            text("SELECT 1 FROM manifest_blobs WHERE blob_digest = :d LIMIT 1"), params
        ).first()
        if remaining == 0 and referenced is None:
            size, key = blob[0]
            session.execute(text("DELETE FROM blobs WHERE digest = :d"), params)
            _queue_bytes(session, key, size)
            result.blobs = 1
            result.keys.append((key, size))
    # Deleting links re-queued this digest through the trigger; settle it last.
    if recheck_at is not None:
        session.execute(
            text("UPDATE gc_blob_reviews SET event_at = :t WHERE digest = :d"),
            {"t": recheck_at, "d": digest},
        )
    else:
        session.execute(text("DELETE FROM gc_blob_reviews WHERE digest = :d"), params)
    return result


def _as_datetime(value: Any) -> dt.datetime:
    """``created_at`` as read by raw SQL: a datetime on PostgreSQL, text on SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def postpone(session: Session, busy: ObjectBusy) -> None:
    """Push a busy review back so the pass moves on to other work."""
    # Table and column come from ObjectBusy's fixed call sites, never from input.
    session.execute(
        text(
            f"UPDATE {busy.table} SET event_at = {now_sql(session)}"  # noqa: S608
            f" WHERE {busy.column} = :v"
        ),
        {"v": busy.value},
    )
