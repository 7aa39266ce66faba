"""Group commit for SQLite: concurrent write transactions share one commit.

SQLite has one writer at a time, and every commit with ``synchronous=FULL``
writes its changed pages to the WAL and fsyncs it. Run one after another,
sixteen concurrent tag pushes pay sixteen fsyncs and rewrite the same index
pages sixteen times. Here the first caller becomes the leader: it runs every
transaction queued so far inside one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each
in its own savepoint so that one failing transaction rolls back alone, and
wakes the others once the commit is durable. Nobody is answered before that
commit, so no acknowledged write can be lost.

The leader uses one dedicated connection, whose page cache stays warm
because no other connection in this process writes between its commits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, Generic, TypeVar

from registry.db.raw import RawTx

T = TypeVar("T")
# Bounds how long one leader works for others, and so the latency it adds.
MAX_BATCH = 64


class _Job(Generic[T]):
    __slots__ = ("done", "error", "lead", "result", "work")

    def __init__(self, work: Callable[[RawTx], T]) -> None:
        self.work = work
        self.done = threading.Event()
        self.lead = False  # set when this job's thread is handed the leadership
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Runs ``work(tx)`` callables in shared SQLite transactions (leader/follower)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        writer_lock: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._connect = connect
        self._writer_lock = writer_lock
        self._mutex = threading.Lock()
        self._pending: list[_Job[Any]] = []
        self._leading = False
        self._conn: Any = None

    def run(self, work: Callable[[RawTx], T]) -> T:
        job: _Job[T] = _Job(work)
        with self._mutex:
            self._pending.append(job)
            job.lead = not self._leading
            self._leading = True
        if not job.lead:
            job.done.wait()
        if job.lead:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Commit one batch, then pass the leadership to the oldest waiter, if any."""
        with self._mutex:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            self._commit_batch(batch)
        finally:
            with self._mutex:
                successor = self._pending[0] if self._pending else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            for job in batch:
                job.done.set()
            if successor is not None:
                successor.done.set()

    def _commit_batch(self, batch: list[_Job[Any]]) -> None:
        try:
            with self._writer_lock():
                conn = self._connection()
                cursor = conn.cursor()
                try:
                    self._run_batch(conn, cursor, batch)
                finally:
                    cursor.close()
        except BaseException as exc:
            # Nothing of this batch was committed: every job reports the failure.
            for job in batch:
                if job.error is None:
                    job.error = exc
            self._drop_connection()

    def _run_batch(self, conn: Any, cursor: Any, batch: list[_Job[Any]]) -> None:
        cursor.execute("BEGIN IMMEDIATE")
        try:
            tx = RawTx(cursor, "sqlite")
            for job in batch:
                cursor.execute("SAVEPOINT job")
                try:
                    job.result = job.work(tx)
                except Exception as exc:
                    job.error = exc
                    # A failed statement leaves the transaction open: undo this job only.
                    cursor.execute("ROLLBACK TO job")
                cursor.execute("RELEASE job")
            cursor.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            for job in batch:
                job.result = None
            raise

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        with self._writer_lock():
            self._drop_connection()
