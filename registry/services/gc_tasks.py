"""One garbage-collection batch inside one write transaction.

Database triggers (migrations 0002 and 0007) append an event row whenever a
reference disappears or an object is created. A batch takes up to N due
events (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so collectors take
different events), reviews each object once its newest event is past the
grace delay, and re-checks the references of the whole batch with one query
per table, under row locks, in the transaction that deletes rows. A
concurrent push therefore either wins (the object is kept) or sees the object
gone (and fails cleanly).

A collector never waits for a lock: objects are locked with ``SKIP LOCKED``
and one that another transaction holds is postponed, and trigger inserts
have no unique key to wait on. So a collector can never be part of a
deadlock, whatever order other transactions lock rows in.

Bytes are queued in ``gc_storage_deletions`` in the same transaction and
deleted after commit, so a process killed in between leaves work, not
orphans.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.db.models import utcnow
from registry.db.raw import EPOCH_NOW


@dataclass
class TaskResult:
    """What one batch did (or would do, in a dry run)."""

    reviewed: int = 0  # events taken off the queue; 0 means nothing is due
    busy: int = 0  # objects another transaction held: postponed
    manifests: int = 0
    blobs: int = 0
    links: int = 0
    # Storage objects (key, size) to delete after commit.
    keys: list[tuple[str, int]] = field(default_factory=list)
    # Sizes of manifests whose bytes were in their row (gone with it): still freed.
    row_payloads: list[int] = field(default_factory=list)


def now_sql(session: Session) -> str:
    return EPOCH_NOW[session.get_bind().dialect.name]


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> float:
    return float(session.execute(text(f"SELECT {now_sql(session)}")).scalar_one())


def in_list(session: Session, name: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``IN``-like condition on a list bound as ONE parameter (a PostgreSQL array,
    JSON text for SQLite's json_each): hundreds of separate bind parameters cost
    more to build and parse than the query itself."""
    items = list(values)
    if is_postgres(session):
        array = "bigint[]" if items and isinstance(items[0], int) else "text[]"
        return f"= ANY(CAST(:{name} AS {array}))", {name: items}
    return f"IN (SELECT value FROM json_each(:{name}))", {name: json.dumps(items)}  # noqa: S608


@dataclass
class _Claim:
    """Due events taken by this transaction, by object key."""

    table: str
    column: str
    now: float
    horizon: float  # events at or before it are past the grace delay
    events: dict[Any, list[int]]  # key -> event ids

    def ids(self, keys: Iterable[Any]) -> list[int]:
        return [i for k in keys for i in self.events.get(k, ())]


def _claim(
    session: Session, table: str, column: str, delay: float, limit: int, locking: bool
) -> _Claim:
    now = db_now(session)
    horizon = now - delay
    # Table and column names come from this module's fixed call sites.
    sql = (
        f"SELECT id, {column} FROM {table} WHERE event_at <= :h"  # noqa: S608
        " ORDER BY event_at LIMIT :n"
    )
    if locking and is_postgres(session):
        sql += " FOR UPDATE SKIP LOCKED"  # other collectors take other events
    events: dict[Any, list[int]] = {}
    for event_id, key in session.execute(text(sql), {"h": horizon, "n": limit}):
        events.setdefault(key, []).append(int(event_id))
    return _Claim(table, column, now, horizon, events)


def _not_yet_due(session: Session, claim: _Claim) -> set[Any]:
    """Keys with a newer event still inside the grace delay: that event's review decides."""
    if not claim.events:
        return set()
    clause, params = in_list(session, "k", claim.events)
    sql = (
        f"SELECT DISTINCT {claim.column} FROM {claim.table}"  # noqa: S608
        f" WHERE {claim.column} {clause} AND event_at > :h"
    )
    return {r[0] for r in session.execute(text(sql), {"h": claim.horizon, **params})}


def _lock_rows(
    session: Session, sql: str, params: dict[str, Any], locking: bool, most: int | None = None
) -> tuple[list[Any], bool]:
    """Rows of ``sql`` (at ``most`` rows, if known) locked FOR UPDATE SKIP LOCKED
    (PostgreSQL), and whether any row was skipped because another transaction holds it."""
    if not (locking and is_postgres(session)):
        return list(session.execute(text(sql), params).all()), False
    locked = list(session.execute(text(sql + " FOR UPDATE SKIP LOCKED"), params).all())
    if len(locked) == most:
        return locked, False
    # Rows we lock cannot vanish, so any extra row now visible is held by someone else.
    visible = session.execute(text(f"SELECT count(*) FROM ({sql}) q"), params).scalar_one()  # noqa: S608
    return locked, int(visible) > len(locked)


def _lock_candidates(
    session: Session, table: str, key: str, candidates: set[Any], locking: bool
) -> tuple[list[Any], set[Any]]:
    """The candidates' rows (key, storage_key, size) locked as by _lock_rows, and the
    keys of those that exist but another transaction holds (busy: reviewed later)."""
    clause, params = in_list(session, "k", candidates)
    # Table and key column come from this module's fixed call sites.
    sql = f"SELECT {key}, storage_key, size FROM {table} WHERE {key} {clause}"  # noqa: S608
    rows, skipped = _lock_rows(session, sql, params, locking, len(candidates))
    busy: set[Any] = set()
    if skipped:
        visible = session.execute(
            text(f"SELECT {key} FROM {table} WHERE {key} {clause}"),  # noqa: S608
            params,
        )
        busy = {r[0] for r in visible} - {r[0] for r in rows}
    return rows, busy


def _finish(session: Session, claim: _Claim, busy: set[Any]) -> None:
    """Drop the events reviewed; push busy objects' events back by a grace delay."""
    done = claim.ids(k for k in claim.events if k not in busy)
    if done:
        clause, params = in_list(session, "e", done)
        session.execute(text(f"DELETE FROM {claim.table} WHERE id {clause}"), params)  # noqa: S608
    postponed = claim.ids(busy)
    if postponed:
        clause, params = in_list(session, "e", postponed)
        session.execute(
            text(f"UPDATE {claim.table} SET event_at = :t WHERE id {clause}"),  # noqa: S608
            {"t": claim.now, **params},
        )


def _delete_rows(session: Session, table: str, key: str, condition: str, params: Any) -> None:
    """Queue the rows' bytes for deletion after commit, then delete the rows."""
    # Table and key column come from this module's fixed call sites.
    session.execute(
        text(
            "INSERT INTO gc_storage_deletions (storage_key, size, queued_at)"  # noqa: S608
            f" SELECT storage_key, size, {now_sql(session)} FROM {table} WHERE {key} {condition}"
            # A manifest pushed since migration 0009 has no storage object.
            " AND storage_key IS NOT NULL ON CONFLICT (storage_key) DO NOTHING"
        ),
        params,
    )
    session.execute(text(f"DELETE FROM {table} WHERE {key} {condition}"), params)  # noqa: S608


# -- manifests -------------------------------------------------------------------

# Manifests of the batch that something keeps: a tag, a parent index in the same
# repository, or (for referrers: signatures, SBOMs) their subject.
_KEPT_MANIFESTS = (
    "SELECT manifest_id FROM tags WHERE manifest_id {ids}"
    " UNION SELECT m.id FROM manifests m"
    " JOIN manifest_references r ON r.child_digest = m.digest"
    " JOIN manifests p ON p.id = r.parent_id AND p.repository_id = m.repository_id"
    " WHERE m.id {ids}"
    " UNION SELECT m.id FROM manifests m"
    " JOIN manifests s ON s.repository_id = m.repository_id AND s.digest = m.subject_digest"
    " WHERE m.id {ids}"
)


def review_manifests(
    session: Session, delay: float, limit: int, *, locking: bool = True
) -> TaskResult:
    """Delete the batch's due manifests that nothing keeps."""
    claim = _claim(session, "gc_manifest_reviews", "manifest_id", delay, limit, locking)
    result = TaskResult(reviewed=len(claim.ids(claim.events)))
    if not claim.events:
        return result
    candidates = set(claim.events) - _not_yet_due(session, claim)
    busy: set[Any] = set()
    if candidates:
        rows, busy = _lock_candidates(session, "manifests", "id", candidates, locking)
        locked = {int(r[0]): (r[1], int(r[2])) for r in rows}
        if locked:
            ids, params = in_list(session, "m", locked)
            kept = {
                int(r[0]) for r in session.execute(text(_KEPT_MANIFESTS.format(ids=ids)), params)
            }
            doomed = [m for m in locked if m not in kept]
            if doomed:
                ids, params = in_list(session, "m", doomed)
                # The BEFORE DELETE trigger queues their blobs, children and referrers.
                _delete_rows(session, "manifests", "id", ids, params)
                result.manifests = len(doomed)
                for key, size in (locked[m] for m in doomed):
                    if key is None:
                        result.row_payloads.append(size)
                    else:
                        result.keys.append((key, size))
    result.busy = len(busy)
    _finish(session, claim, busy)
    return result


# -- blobs -----------------------------------------------------------------------


def review_blobs(session: Session, delay: float, limit: int, *, locking: bool = True) -> TaskResult:
    """Drop repository links no manifest of that repository uses (after the grace
    period), then the blobs nothing links or references any more."""
    claim = _claim(session, "gc_blob_reviews", "digest", delay, limit, locking)
    result = TaskResult(reviewed=len(claim.ids(claim.events)))
    if not claim.events:
        return result
    candidates = set(claim.events) - _not_yet_due(session, claim)
    busy: set[str] = set()
    work: dict[str, tuple[str, int]] = {}
    if candidates:
        rows, busy = _lock_candidates(session, "blobs", "digest", candidates, locking)
        work = {str(r[0]): (str(r[1]), int(r[2])) for r in rows}
    links: list[Any] = []
    if work:
        # With the blob rows locked no link can be added; a link another
        # transaction holds (a push, a blob DELETE) makes its blob busy.
        clause, params = in_list(session, "d", work)
        links, skipped = _lock_rows(
            session,
            "SELECT repository_id, blob_digest, created_at FROM repository_blobs"  # noqa: S608
            f" WHERE blob_digest {clause}",
            params,
            locking,
        )
        if skipped:
            held = {(int(r[0]), str(r[1])) for r in links}
            visible = session.execute(
                text(
                    "SELECT repository_id, blob_digest FROM repository_blobs"  # noqa: S608
                    f" WHERE blob_digest {clause}"
                ),
                params,
            )
            busy |= {str(d) for r, d in visible if (int(r), str(d)) not in held}
            for digest in busy:
                work.pop(digest, None)
    if work:
        _settle_blobs(session, claim, work, [r for r in links if str(r[1]) in work], delay, result)
    result.busy = len(busy)
    _finish(session, claim, busy)
    return result


def _settle_blobs(
    session: Session,
    claim: _Claim,
    work: dict[str, tuple[str, int]],
    links: list[Any],
    delay: float,
    result: TaskResult,
) -> None:
    clause, params = in_list(session, "d", work)
    used = {
        (str(d), int(r))
        for d, r in session.execute(
            text(
                "SELECT DISTINCT mb.blob_digest, m.repository_id FROM manifest_blobs mb"  # noqa: S608
                f" JOIN manifests m ON m.id = mb.manifest_id WHERE mb.blob_digest {clause}"
            ),
            params,
        )
    }
    referenced = {d for d, _ in used}
    cutoff = utcnow() - dt.timedelta(seconds=delay)
    remaining: set[str] = set()
    recheck: dict[str, float] = {}
    unlink: list[dict[str, Any]] = []
    for repo_id, digest_raw, created_raw in links:
        digest, repo = str(digest_raw), int(repo_id)
        created = _as_datetime(created_raw)
        if (digest, repo) in used:
            remaining.add(digest)
        elif created > cutoff:
            # Pushed recently and not yet referenced: its manifest may be on the way.
            remaining.add(digest)
            recheck[digest] = max(recheck.get(digest, 0.0), created.timestamp())
        else:
            unlink.append({"r": repo, "d": digest})
    if unlink:
        session.execute(
            text("DELETE FROM repository_blobs WHERE repository_id = :r AND blob_digest = :d"),
            unlink,
        )
        result.links = len(unlink)
    doomed = [d for d in work if d not in remaining and d not in referenced]
    if doomed:
        gone = [work[d] for d in doomed]
        ids, params = in_list(session, "d", doomed)
        _delete_rows(session, "blobs", "digest", ids, params)
        result.blobs = len(doomed)
        result.keys.extend(gone)
    if recheck:
        # Review again once the youngest unreferenced link is past the grace delay.
        session.execute(
            text(
                "INSERT INTO gc_blob_reviews (digest, event_at, event) VALUES (:d, :t, 'recheck')"
            ),
            [{"d": d, "t": t} for d, t in recheck.items()],
        )
    if unlink:
        _drop_own_unlink_events(session, {u["d"] for u in unlink}, claim.now)


def _drop_own_unlink_events(session: Session, digests: set[str], since: float) -> None:
    """Deleting links made the trigger queue those digests again; this batch has
    just settled them (their blob and links were locked), so drop those events."""
    clause, params = in_list(session, "d", digests)
    inner = (
        f"SELECT id FROM gc_blob_reviews WHERE digest {clause}"  # noqa: S608
        " AND event = 'unlink' AND event_at >= :since"
    )
    if is_postgres(session):
        inner += " FOR UPDATE SKIP LOCKED"  # never wait on another collector's events
    session.execute(
        text(f"DELETE FROM gc_blob_reviews WHERE id IN ({inner})"),  # noqa: S608
        {"since": since, **params},
    )


def _as_datetime(value: Any) -> dt.datetime:
    """``created_at`` as read by raw SQL: a datetime on PostgreSQL, text on SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
