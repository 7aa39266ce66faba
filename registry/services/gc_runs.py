"""The ``gc_runs`` history: one row per pass, kept alive by a renewed lease.

A pass that dies without finishing (``kill -9``, a lost host) cannot mark its
own row, so it renews ``lease_until`` from a thread while it runs. Writers (the
start of every pass: ``lading gc``, the worker, an admin trigger) mark a
"running" row whose lease ran out as "abandoned"; readers (the admin API's
status and history) only report it so, without writing.

Every time here is the database's clock, read in the transaction that uses it:
replicas on hosts whose clocks disagree still agree on whose lease ran out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, not_, or_, select, text, update
from sqlalchemy.orm import Session

from registry.db.engine import Database, rows_affected
from registry.db.models import GcRun
from registry.services.gc_tasks import db_now

if TYPE_CHECKING:
    from registry.services.gc import GcReport

log = logging.getLogger("lading.gc")

# Rows from before leases existed (migration 0008) have none: judge them by age.
LEGACY_STALE_AFTER = dt.timedelta(hours=6)
ABANDONED_ERROR = "abandoned: the process running this pass stopped renewing its lease"


def db_clock(session: Session) -> dt.datetime:
    """The database's current time (UTC), not this process's."""
    return dt.datetime.fromtimestamp(db_now(session), dt.UTC)


def is_stale(now: dt.datetime) -> ColumnElement[bool]:
    """SQL: the row is "running" but its lease ran out by ``now``."""
    return and_(
        GcRun.status == "running",
        or_(
            GcRun.lease_until < now,
            and_(GcRun.lease_until.is_(None), GcRun.started_at < now - LEGACY_STALE_AFTER),
        ),
    )


def is_live(now: dt.datetime) -> ColumnElement[bool]:
    """SQL: the row is "running" and its lease still holds at ``now``."""
    return and_(GcRun.status == "running", not_(is_stale(now)))


def abandoned_at(run: GcRun) -> dt.datetime:
    """When a stale run was given up: the end of its last lease. The same whether
    derived on read or stored by a writer, so a row's finish time never moves."""
    return run.lease_until or run.started_at + LEGACY_STALE_AFTER


def stale(run: GcRun, now: dt.datetime) -> bool:
    """Python twin of :func:`is_stale` for a row already read."""
    return run.status == "running" and abandoned_at(run) < now


class RunHistory:
    def __init__(self, db: Database, lease_seconds: float, keep_runs: int = 10_000) -> None:
        self.db = db
        # History rows kept (the admin API pages through them).
        self.keep_runs = max(keep_runs, 1)
        # Renewed every quarter lease, so three renewals may be late before others
        # give the pass up (SQLite writers may wait behind a long transaction).
        self.lease = dt.timedelta(seconds=lease_seconds)

    def mark_abandoned(self) -> int:
        """Mark "running" rows whose lease ran out as "abandoned"; how many."""
        count = 0
        with self.db.write() as session:
            now = db_clock(session)
            for run in session.scalars(select(GcRun).where(is_stale(now))).all():
                # Re-checked under the row lock: a pass that was only slow may have
                # renewed its lease or finished since the select.
                count += rows_affected(
                    session.execute(
                        update(GcRun)
                        .where(GcRun.id == run.id, is_stale(now))
                        .values(
                            status="abandoned",
                            finished_at=abandoned_at(run),
                            error=ABANDONED_ERROR,
                        )
                    )
                )
        if count:
            log.warning("gc: marked %d run(s) whose process died as abandoned", count)
        return count

    def start(self, dry_run: bool, trigger: str) -> int:
        self.mark_abandoned()
        with self.db.write() as session:
            # A worker records a pass every few minutes: keep the newest rows only.
            session.execute(
                text(
                    "DELETE FROM gc_runs WHERE status <> 'running' AND id <"
                    " (SELECT id FROM gc_runs ORDER BY id DESC LIMIT 1 OFFSET :keep)"
                ),
                {"keep": self.keep_runs - 1},
            )
            now = db_clock(session)
            run = GcRun(
                started_at=now,
                lease_until=now + self.lease,
                status="running",
                dry_run=dry_run,
                trigger=trigger,
            )
            for name in ("manifests", "blobs", "links", "uploads"):
                setattr(run, f"{name}_deleted", 0)
            run.objects_freed = 0
            run.bytes_freed = 0
            session.add(run)
            session.flush()
            return run.id

    @contextmanager
    def renewing(self, run_id: int) -> Iterator[None]:
        """Renew the run's lease from a thread until the block ends."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew_loop, args=(run_id, stop), name="lading-gc-lease", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _renew_loop(self, run_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.lease.total_seconds() / 4):
            try:
                with self.db.write() as session:
                    session.execute(
                        update(GcRun)
                        .where(GcRun.id == run_id, GcRun.status == "running")
                        .values(lease_until=db_clock(session) + self.lease)
                    )
            except Exception:
                # The pass itself will meet the same database trouble and report it.
                log.warning("gc: cannot renew the lease of run %d", run_id, exc_info=True)

    def finish(self, report: GcReport, status: str, error: str | None) -> None:
        with self.db.write() as session:
            run = session.get(GcRun, report.run_id)
            if run is None:
                return
            # Also over "abandoned": a pass that was only slow still reports what it did.
            run.finished_at = db_clock(session)
            run.lease_until = None
            run.status = status
            run.error = error
            run.manifests_deleted = report.manifests_deleted
            run.blobs_deleted = report.blobs_deleted
            run.links_deleted = report.links_deleted
            run.uploads_deleted = report.uploads_deleted
            run.objects_freed = report.objects_freed
            run.bytes_freed = report.bytes_freed
