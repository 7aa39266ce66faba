"""Compaction of the GC event queues (migration 0007).

Triggers append one event per change, and an object is reviewed only once its
newest event is past the grace delay; older events of the same object say
nothing more. A pass deletes due events as it reviews them, but events inside
the grace delay pile up: a tag moved every minute with a one-day delay left
1,440 rows. Compaction keeps only each object's newest event, so the queues
hold at most one row per object touched within the grace delay.

It walks a queue in id ranges, one short transaction each, so on SQLite pushes
wait at most one range. On PostgreSQL rows another transaction holds (a
collector's claimed batch) are skipped, never waited for.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.db.engine import Database, rows_affected
from registry.services.gc_tasks import is_postgres

# queue table -> object key column
QUEUES = {"gc_manifest_reviews": "manifest_id", "gc_blob_reviews": "digest"}
RANGE = 5000  # event ids per transaction


def _compact_range(session: Session, table: str, column: str, after: int) -> tuple[int, int]:
    """Compact events with ids in (after, after + RANGE rows]; (last id seen, deleted)."""
    upto = session.execute(
        text(f"SELECT max(id) FROM (SELECT id FROM {table} WHERE id > :a ORDER BY id LIMIT :n) q"),  # noqa: S608
        {"a": after, "n": RANGE},
    ).scalar()
    if upto is None:
        return after, 0
    # Table and column names come from QUEUES.
    older = (
        f"SELECT e.id FROM {table} e WHERE e.id > :a AND e.id <= :b AND EXISTS"  # noqa: S608
        f" (SELECT 1 FROM {table} n WHERE n.{column} = e.{column}"
        " AND (n.event_at > e.event_at OR (n.event_at = e.event_at AND n.id > e.id)))"
    )
    if is_postgres(session):
        older += " FOR UPDATE OF e SKIP LOCKED"
    deleted = rows_affected(
        session.execute(
            text(f"DELETE FROM {table} WHERE id IN ({older})"),  # noqa: S608
            {"a": after, "b": int(upto)},
        )
    )
    return int(upto), deleted


def compact(db: Database) -> int:
    """Delete every event that a newer event of the same object supersedes; how many."""
    total = 0
    for table, column in QUEUES.items():
        after = -1
        while True:
            with db.write() as session:
                upto, deleted = _compact_range(session, table, column, after)
            total += deleted
            if upto == after:
                break
            after = upto
    return total
