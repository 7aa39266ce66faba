"""Garbage collection on demand for the admin API: trigger, status and run history.

A triggered pass runs in a thread of the process that received the request; any
process answers status and history from the ``gc_runs`` table and the review queues.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from registry.db.engine import Database
from registry.db.models import GcRun
from registry.domain.errors import CONFLICT, UNAVAILABLE, RegistryError
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector

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


def _view(row: GcRun) -> GcRunView:
    return GcRunView(
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


class GcControl:
    def __init__(self, db: Database, collector: GarbageCollector, audit: AuditService) -> None:
        self.db = db
        self.collector = collector
        self.audit = audit
        self._busy = threading.Lock()

    def runs(self, limit: int, before_id: int | None = None) -> tuple[list[GcRunView], int | None]:
        # Rows of passes whose process died read "abandoned", not "running" forever.
        self.collector.history.mark_abandoned()
        query = select(GcRun).order_by(GcRun.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(GcRun.id < before_id)
        with self.db.read() as session:
            rows = [_view(r) for r in session.scalars(query)]
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    def run(self, run_id: int) -> GcRunView | None:
        with self.db.read() as session:
            row = session.get(GcRun, run_id)
            return _view(row) if row is not None else None

    def _running(self) -> GcRunView | None:
        with self.db.read() as session:
            row = session.scalars(
                select(GcRun).where(GcRun.status == "running").order_by(GcRun.id.desc()).limit(1)
            ).first()
            return _view(row) if row is not None else None

    def status(self) -> GcStatus:
        self.collector.history.mark_abandoned()
        with self.db.read() as session:
            last = session.scalars(
                select(GcRun).where(GcRun.status != "running").order_by(GcRun.id.desc()).limit(1)
            ).first()
            last_view = _view(last) if last is not None else None
        return GcStatus(
            running=self._running(),
            last=last_view,
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
            return _view(row) if row is not None else None
