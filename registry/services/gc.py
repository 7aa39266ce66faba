"""Online garbage collection: passes over due reviews, stale uploads, a worker thread.

See ``registry.services.gc_tasks`` for the rules of one batch. A pass takes
a batch of due reviews per write transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite write transactions are exclusive anyway), re-checks them
set-wise and deletes their bytes after commit, so any number of processes may
collect at once and pushes wait at most one short batch. Repository links of
blobs pushed but never referenced age out after the review delay, like
untagged manifests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from registry.db.engine import Database, rows_affected
from registry.db.models import utcnow
from registry.services import gc_queue, gc_tasks
from registry.services.gc_runs import RunHistory
from registry.services.gc_tasks import TaskResult
from registry.services.upload_appender import NO_STORAGE
from storage.driver import Driver, ObjectNotFound, StorageError, UploadState

log = logging.getLogger("lading.gc")

# Deadlock, serialization failure, lock not available (PostgreSQL SQLSTATEs).
_RETRYABLE = frozenset({"40P01", "40001", "55P03"})

# Called with (phase, done, total) as a pass advances; total may grow.
Progress = Callable[[str, int, int], None]


class _DryRunRollback(Exception):
    pass


@dataclass
class GcReport:
    run_id: int | None = None
    dry_run: bool = False
    manifests_deleted: int = 0
    blobs_deleted: int = 0
    links_deleted: int = 0
    uploads_deleted: int = 0
    objects_freed: int = 0
    bytes_freed: int = 0
    events_compacted: int = 0  # queue events a newer one of the same object superseded

    def add(self, task: TaskResult, *, storage: bool = False) -> None:
        """Count a batch's rows; its storage objects only with ``storage`` (a dry
        run): a real pass counts each once its deletion succeeded."""
        self.manifests_deleted += task.manifests
        self.blobs_deleted += task.blobs
        self.links_deleted += task.links
        # A manifest counts as freed wherever its bytes lived (storage or its row).
        self.objects_freed += len(task.row_payloads)
        self.bytes_freed += sum(task.row_payloads)
        if storage:
            for _, size in task.keys:
                self.freed(size)

    def freed(self, size: int) -> None:
        self.objects_freed += 1
        self.bytes_freed += size


class GarbageCollector:
    def __init__(
        self,
        db: Database,
        driver: Driver,
        *,
        review_delay: float,
        upload_purge_after: float,
        task_pause: float = 0.0,
        batch_size: int = 500,
        lease_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.driver = driver
        self.review_delay = review_delay
        self.upload_purge_after = upload_purge_after
        # Test hook: sleep between a commit and its byte deletion (crash tests).
        self.task_pause = task_pause
        # Reviews per transaction: hundreds amortise commits and round trips; a batch
        # holds its objects' row locks (SQLite: the write lock) for tens of ms.
        self.batch_size = max(batch_size, 1)
        # Keys whose bytes are gone but whose queue rows are not yet cleared.
        self._deleted: list[str] = []
        self.history = RunHistory(db, lease_seconds)

    # -- a whole pass ----------------------------------------------------------
    def run(
        self, *, dry_run: bool = False, trigger: str = "manual", progress: Progress | None = None
    ) -> GcReport:
        report = GcReport(dry_run=dry_run)
        report.run_id = self.history.start(dry_run, trigger)
        try:
            with self.history.renewing(report.run_id):
                self._pass(report, dry_run, progress)
        except BaseException as exc:
            self.history.finish(report, "failed", repr(exc)[:2000])
            raise
        self.history.finish(report, "ok", None)
        return report

    def _pass(self, report: GcReport, dry_run: bool, progress: Progress | None) -> None:
        if dry_run:
            self._dry_run(report, progress)
            return
        self._flush_storage_deletions(report)
        try:
            self._drain(report, progress)
        finally:
            self._clear_deleted()
        # What is left is inside the grace delay: keep one event per object.
        report.events_compacted = gc_queue.compact(self.db)
        self._purge_uploads(report)

    def pending(self) -> int:
        """Objects with a review due now."""
        with self.db.read() as session:
            now = gc_tasks.db_now(session)
            total = 0
            for table, column in (
                ("gc_manifest_reviews", "manifest_id"),
                ("gc_blob_reviews", "digest"),
            ):
                total += int(
                    session.execute(
                        text(
                            f"SELECT count(DISTINCT {column}) FROM {table}"  # noqa: S608
                            " WHERE event_at <= :h"
                        ),
                        {"h": now - self.review_delay},
                    ).scalar_one()
                )
            return total

    def _drain(self, report: GcReport, progress: Progress | None) -> None:
        # Manifests first: deleting them queues their blobs for the same pass.
        total = self.pending()
        done = 0
        for phase, review in (
            ("manifests", gc_tasks.review_manifests),
            ("blobs", gc_tasks.review_blobs),
        ):
            while True:
                try:
                    with self.db.write() as session:
                        task = review(session, self.review_delay, self.batch_size)
                except OperationalError as exc:
                    # A collector never waits on a lock, so this is not expected; the
                    # batch rolled back as a whole, so simply take it again.
                    if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE:
                        raise
                    log.info("gc: retrying a batch after %s", type(exc.orig).__name__)
                    time.sleep(random.uniform(0.01, 0.1))
                    continue
                if not task.reviewed:
                    break
                report.add(task)
                done += task.reviewed
                total = max(total, done)
                if task.keys and self.task_pause:
                    time.sleep(self.task_pause)
                self._delete_bytes(task.keys, report)
                if task.busy and not (task.manifests or task.blobs or task.links):
                    # Only objects a push holds are left: give it time to commit.
                    time.sleep(0.02)
                if progress is not None:
                    progress(phase, done, total)

    def _dry_run(self, report: GcReport, progress: Progress | None) -> None:
        """Run every due review in one transaction and roll it back: exact, but it
        holds the write lock throughout on SQLite, so pushes wait."""
        total = self.pending()
        done = 0
        with contextlib.suppress(_DryRunRollback), self.db.write() as session:
            for phase, review in (
                ("manifests", gc_tasks.review_manifests),
                ("blobs", gc_tasks.review_blobs),
            ):
                while (
                    task := review(session, self.review_delay, self.batch_size, locking=False)
                ).reviewed:
                    done += task.reviewed
                    report.add(task, storage=True)
                    if progress is not None:
                        progress(phase, done, max(total, done))
            raise _DryRunRollback
        report.uploads_deleted = len(self._stale_uploads())

    # -- bytes -----------------------------------------------------------------
    def _delete_bytes(self, keys: list[tuple[str, int]], report: GcReport) -> None:
        """Delete bytes now; their queue rows are cleared in batches (one commit per
        object would halve throughput; a crash only means deleting again).

        Only a deletion that succeeded counts as freed: a failed one is retried
        by a later pass (which counts it then), and an object already gone was
        freed by another pass (a concurrent flush, or one killed before its
        queue rows were cleared)."""
        for key, size in keys:
            try:
                self.driver.delete(key)
            except ObjectNotFound:
                pass
            except StorageError as exc:
                log.warning("gc: cannot delete %s yet: %s", key, exc)
                continue
            else:
                report.freed(size)
            self._deleted.append(key)
        if len(self._deleted) >= 200:
            self._clear_deleted()

    def _clear_deleted(self) -> None:
        if not self._deleted:
            return
        with self.db.write() as session:
            for start in range(0, len(self._deleted), 500):
                clause, params = gc_tasks.in_list(session, "k", self._deleted[start : start + 500])
                session.execute(
                    text(f"DELETE FROM gc_storage_deletions WHERE storage_key {clause}"),  # noqa: S608
                    params,
                )
        self._deleted.clear()

    def _flush_storage_deletions(self, report: GcReport) -> None:
        """Bytes whose rows an earlier (perhaps killed) pass deleted."""
        with self.db.read() as session:
            rows = session.execute(text("SELECT storage_key, size FROM gc_storage_deletions")).all()
        self._delete_bytes([(str(key), int(size)) for key, size in rows], report)
        self._clear_deleted()

    # -- uploads ---------------------------------------------------------------
    def _stale_uploads(self) -> list[tuple[str, str, int]]:
        cutoff = utcnow() - dt.timedelta(seconds=self.upload_purge_after)
        with self.db.read() as session:
            rows = session.execute(
                text("SELECT id, driver_state, size FROM upload_sessions WHERE updated_at < :c"),
                {"c": cutoff},
            ).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def _purge_uploads(self, report: GcReport) -> None:
        cutoff = utcnow() - dt.timedelta(seconds=self.upload_purge_after)
        for upload_id, token, size in self._stale_uploads():
            with self.db.write() as session:
                # Re-check: a PATCH may have refreshed it since we looked. A PATCH still
                # streaming holds a live lease but only moves updated_at when it ends:
                # a session resumed after a long pause is not taken from under it.
                now = dt.datetime.fromtimestamp(gc_tasks.db_now(session), dt.UTC)
                gone = rows_affected(
                    session.execute(
                        text(
                            "DELETE FROM upload_sessions WHERE id = :id AND updated_at < :c"
                            " AND (lease_token IS NULL OR lease_expires_at < :now)"
                        ),
                        {"id": upload_id, "c": cutoff, "now": now},
                    )
                )
            if gone:
                report.uploads_deleted += 1
                if token != NO_STORAGE:  # recorded before its storage started
                    with contextlib.suppress(StorageError):
                        self.driver.abort_upload(UploadState(token, size))
        self._purge_orphan_uploads(report)
        with self.db.write() as session:
            # Ended references past their lifetime: refused as too old by now anyway.
            session.execute(
                text("DELETE FROM upload_ends WHERE expires_at < :now"),
                {"now": gc_tasks.db_now(session)},
            )

    def _purge_orphan_uploads(self, report: GcReport) -> None:
        """Uploads storage holds without a row: aborted once seen that way long enough.

        A live upload is rowless only within one request: a commit claims its
        session row before touching storage (and puts it back if it fails), and a
        one-request upload has none while it streams. ``upload_purge_after``
        (hours) outlasts such requests; a one-request upload still streaming after
        it (and a pass interval) would be aborted and fail, unacknowledged.
        """
        try:
            listed = dict(self.driver.list_uploads())
        except StorageError as exc:
            log.warning("gc: cannot list uploads: %s", exc)
            return
        with self.db.write() as session:
            known = {r[0] for r in session.execute(text("SELECT id FROM upload_sessions"))}
            now = gc_tasks.db_now(session)
            seen: dict[str, float] = dict(
                session.execute(
                    text("SELECT key, first_seen FROM gc_orphans WHERE key LIKE 'upload:%'")
                ).all()
            )
            due: list[str] = []
            for upload_id in listed:
                key = f"upload:{upload_id}"
                if upload_id in known:
                    continue
                if key not in seen:
                    session.execute(
                        text(
                            "INSERT INTO gc_orphans (key, first_seen) VALUES (:k, :t)"
                            " ON CONFLICT (key) DO NOTHING"  # another collector saw it too
                        ),
                        {"k": key, "t": now},
                    )
                elif seen[key] <= now - self.upload_purge_after:
                    due.append(upload_id)
            for key in seen:
                upload_id = key.removeprefix("upload:")
                if upload_id in known or upload_id not in listed or upload_id in due:
                    session.execute(text("DELETE FROM gc_orphans WHERE key = :k"), {"k": key})
        for upload_id in due:
            with contextlib.suppress(StorageError):
                self.driver.abort_upload(listed[upload_id])
            report.uploads_deleted += 1


class GcWorker:
    """Runs a pass every ``interval`` seconds in a daemon thread until stopped."""

    def __init__(
        self,
        collector: GarbageCollector,
        interval: float,
        on_report: Callable[[GcReport | None], None] | None = None,
    ) -> None:
        self.collector = collector
        self.interval = interval
        # Told of each pass (None for a failed one), e.g. to update metrics.
        self.on_report = on_report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lading-gc", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = self.collector.run(trigger="worker")
            except Exception:
                log.exception("gc pass failed")
                if self.on_report is not None:
                    self.on_report(None)
                continue
            if self.on_report is not None:
                self.on_report(report)
            if report.objects_freed or report.uploads_deleted:
                log.info(
                    "gc: freed %d objects (%d bytes), %d uploads",
                    report.objects_freed,
                    report.bytes_freed,
                    report.uploads_deleted,
                )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
