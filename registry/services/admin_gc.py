"""Garbage collection on demand for the admin API: trigger, status and run history.

A triggered pass runs in a thread of the process that received the request; any
process answers status and history from the ``gc_runs`` table and the review queues.
Answers never write: a "running" row whose lease ran out (by the database's clock)
reads "abandoned"; the next pass stores that (see registry.services.gc_runs).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, func, not_, select
from sqlalchemy.orm import Session

from registry.db.engine import Database
from registry.db.models import GcRun
from registry.domain.errors import CONFLICT, UNAVAILABLE, RegistryError
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.gc_runs import ABANDONED_ERROR, abandoned_at, db_clock, is_live, stale

log = logging.getLogger("lading.admin.gc")


@dataclass(frozen=True, slots=True)
class GcRunView:
    id: int
    status: str
    trigger: str
    dry_run: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None
    manifests_deleted: int
    blobs_deleted: int
    links_deleted: int
    uploads_deleted: int
    objects_freed: int
    bytes_freed: int
    error: str | None


@dataclass(frozen=True, slots=True)
class GcStatus:
    running: GcRunView | None
    last: GcRunView | None
    pending_reviews: int
    review_delay_seconds: float


def _view(row: GcRun, now: dt.datetime) -> GcRunView:
    """The row as the API shows it: derived "abandoned" if its lease ran out by ``now``,
    exactly as the next pass will store it."""
    view = GcRunView(
        id=row.id,
        status=row.status,
        trigger=row.trigger,
        dry_run=row.dry_run,
        started_at=row.started_at,
        finished_at=row.finished_at,
        manifests_deleted=row.manifests_deleted,
        blobs_deleted=row.blobs_deleted,
        links_deleted=row.links_deleted,
        uploads_deleted=row.uploads_deleted,
        objects_freed=row.objects_freed,
        bytes_freed=row.bytes_freed,
        error=row.error,
    )
    if stale(row, now):
        view = replace(
            view, status="abandoned", finished_at=abandoned_at(row), error=ABANDONED_ERROR
        )
    return view


class GcControl:
    def __init__(self, db: Database, collector: GarbageCollector, audit: AuditService) -> None:
        self.db = db
        self.collector = collector
        self.audit = audit
        self._busy = threading.Lock()

    def runs(self, limit: int, before_id: int | None = None) -> tuple[list[GcRunView], int | None]:
        query = select(GcRun).order_by(GcRun.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(GcRun.id < before_id)
        with self.db.read() as session:
            now = db_clock(session)
            rows = [_view(r, now) for r in session.scalars(query)]
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    def run(self, run_id: int) -> GcRunView | None:
        with self.db.read() as session:
            row = session.get(GcRun, run_id)
            return _view(row, db_clock(session)) if row is not None else None

    def status(self) -> GcStatus:
        with self.db.read() as session:
            now = db_clock(session)
            # "last" is the newest pass that is over, abandoned ones included.
            running = _newest(session, now, is_live(now))
            last = _newest(session, now, not_(is_live(now)))
        return GcStatus(
            running=running,
            last=last,
            pending_reviews=self.collector.pending(),
            review_delay_seconds=self.collector.review_delay,
        )

    def trigger(self, actor: str, *, dry_run: bool, wait: bool) -> GcRunView:
        """Start a pass; with ``wait`` return it finished, else as soon as it is recorded."""
        # Passes are safe to run concurrently (see registry.services.gc); this only stops
        # one process from piling up passes. A row left "running" by a process that died
        # must not block triggers, so the table is not consulted here.
        if not self._busy.acquire(blocking=False):
            raise RegistryError(CONFLICT, "a garbage collection pass is already running here")
        with self.db.read() as session:
            before = session.scalar(select(func.max(GcRun.id))) or 0
        self.audit.record(actor, "gc.trigger", "gc", {"dry_run": dry_run})
        result: dict[str, int] = {}

        def work() -> None:
            try:
                report = self.collector.run(dry_run=dry_run, trigger="admin")
                if report.run_id is not None:
                    result["id"] = report.run_id
            except Exception:
                log.exception("admin-triggered garbage collection failed")
            finally:
                self._busy.release()

        thread = threading.Thread(target=work, name="lading-admin-gc", daemon=True)
        thread.start()
        if wait:
            thread.join()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            view = self._newest_after(before)
            if view is not None:
                return view
            time.sleep(0.05)
        raise RegistryError(UNAVAILABLE, "the garbage collection pass did not start")

    def _newest_after(self, run_id: int) -> GcRunView | None:
        with self.db.read() as session:
            row = session.scalars(
                select(GcRun).where(GcRun.id > run_id).order_by(GcRun.id).limit(1)
            ).first()
            return _view(row, db_clock(session)) if row is not None else None


def _newest(session: Session, now: dt.datetime, condition: ColumnElement[bool]) -> GcRunView | None:
    row = session.scalars(select(GcRun).where(condition).order_by(GcRun.id.desc()).limit(1)).first()
    return _view(row, now) if row is not None else None
