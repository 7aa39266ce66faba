"""Engines and sessions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry.db.disk_full import full_disk_refused
from registry.db.group_commit import GroupCommitter
from registry.db.raw import RawTx, to_pyformat


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control so writers can BEGIN IMMEDIATE: a deferred
        # transaction that later writes can fail with SQLITE_BUSY without waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it is acknowledged.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _postgres_setup(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # A pre-ping costs two round trips (BEGIN, SELECT 1) per checkout. An idle
        # connection receives nothing unless the server ended it (restart, idle
        # timeout): a readable socket means the connection is dead, and the pool
        # replaces it. Costs one poll() and no round trip.
        if dbapi_connection.closed:
            raise DisconnectionError("connection closed")
        try:
            readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError) as exc:
            raise DisconnectionError(str(exc)) from exc
        if readable:
            raise DisconnectionError("server ended the connection")


log = logging.getLogger("lading.db")

# deadlock_detected, serialization_failure
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_READ_ATTEMPTS = 3
T = TypeVar("T")


class _ConnectionLost(Exception):
    """A read failed because its connection is closed (the server ended it)."""


class QuickReadUnavailable(Exception):
    """The quick path cannot answer now; run the normal (threaded) read."""


def _unusable(exc: Exception) -> ArgumentError:
    # The URL itself is not shown: it may hold a password.
    return ArgumentError(f"database_url is not usable: {exc}")


class Database:
    """Owns the engine; hands out read and write sessions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ValueError as exc:  # a port that is not a number, say
            raise _unusable(exc) from exc
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
            # Opening an SQLite connection (schema read, pragmas) costs far more than
            # a query: keep one per thread that may use it (anyio's 40 + lookups).
            kwargs["pool_size"] = 64
            kwargs["max_overflow"] = 16
        elif self.dialect == "postgresql":
            # Overflow connections are closed on return, so a pool smaller than the
            # usual concurrency reconnects per request. 4 processes x 24 stays under
            # PostgreSQL's default max_connections (100).
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 8
        try:
            self.engine = create_engine(url, **kwargs)
        except ImportError as exc:  # a driver that is not installed
            raise _unusable(exc) from exc
        if self.dialect == "postgresql":
            _postgres_setup(self.engine)
        self._write_engine: Engine = self.engine
        self._thread_lock = threading.Lock()
        self._local = threading.local()
        self._sqlite_path: str | None = None
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._sqlite_path = parsed.database
        self._lock_path: str | None = None
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._lock_path = f"{parsed.database}.writelock"
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)
            self._write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._group: GroupCommitter | None = None
        if self.dialect == "sqlite":
            self._group = GroupCommitter(self.engine.raw_connection, self.writer_lock)
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def read_session_factory(self) -> sessionmaker[Session]:
        """Sessions in deferred transactions whose caller commits (may write, may lose races)."""
        return self._read_sessions

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; it never takes a write lock."""
        # Closing (not rolling back) keeps loaded attributes usable afterwards.
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def read_snapshot(self) -> Iterator[Session]:
        """Like ``read``, but every query sees the same committed state.

        SQLite's read transaction already does; PostgreSQL's default (read committed)
        lets each statement see commits made since the one before.
        """
        with self._read_sessions() as session:
            if not self.is_sqlite:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error."""
        with (
            full_disk_refused(),
            self.writer_lock(),
            self._write_sessions() as session,
            session.begin(),
        ):
            yield session

    def write_retrying(self, work: Callable[[Session], T], attempts: int = 5) -> T:
        """Run ``work`` in a ``write()`` session, again from the start when PostgreSQL
        reports a deadlock or serialization failure (it rolled the whole transaction
        back, so retrying is safe). ``work`` must only touch the database."""
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return work(session)
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code not in _RETRYABLE_SQLSTATES or attempt == attempts - 1:
                    raise
                log.info("write transaction rolled back by the database (%s): retrying", code)
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    def commit_unlocked(self, work: Callable[[Session], T], attempts: int = 5) -> T:
        """Run ``work`` in a session outside the writer lock and commit what it wrote.

        For logins: password hashing is slow by design and must not hold the lock that
        pushes need, and the failure counters ``work`` writes are committed also when
        it returns a refusal. A deferred SQLite transaction may lose a race to another
        writer (OperationalError): retried from the start.
        """
        for attempt in range(attempts):
            try:
                with self.read_session_factory() as session:
                    result = work(session)
                    session.commit()
                return result
            except OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Serialize SQLite writers: threads by a lock, processes by flock.

        SQLite's busy handler polls with sleeps of up to 100 ms, so contended
        writers stall; blocking on a lock hands over the moment it is free.
        """
        if self._lock_path is None:
            yield
            return
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    @contextmanager
    def raw_transaction(self) -> Iterator[RawTx]:
        """A write transaction on a raw DBAPI connection (see registry.db.raw)."""
        with full_disk_refused(), self.writer_lock():
            conn = self.engine.raw_connection()
            try:
                cursor = conn.cursor()
                if self.dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield RawTx(cursor, self.dialect)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    cursor.close()
            finally:
                conn.close()

    def run_raw(self, work: Callable[[RawTx], T], attempts: int = 5) -> T:
        """Run ``work`` in a raw transaction, retrying it when PostgreSQL reports a
        deadlock or serialization failure (it rolled our side back; retrying is safe).

        On SQLite, concurrent callers share one transaction and one commit
        (see registry.db.group_commit): ``work`` must only touch the database.
        """
        if self._group is not None:
            with full_disk_refused():
                return self._group.run(work)
        for attempt in range(attempts):
            try:
                with self.raw_transaction() as tx:
                    return work(tx)
            except Exception as exc:
                code = getattr(exc, "sqlstate", None)
                if code not in _RETRYABLE_SQLSTATES or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core write transaction: cheaper than a Session on hot write paths."""
        with full_disk_refused(), self.writer_lock(), self._write_engine.begin() as conn:
            yield conn

    def fetch_one(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run a read-only query with ``:name`` parameters on a raw pooled connection.

        Hot lookups (manifest GET, blob HEAD) spend ~300 µs in an ORM session
        but ~15 µs here; use it only for simple reads.
        """
        rows = self._raw(sql, params, one=True)
        return rows[0] if rows else None

    def fetch_one_quick(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """``fetch_one`` for the event loop itself: SQLite only, never waits on a lock.

        An indexed read of a WAL database costs ~15 µs, far less than a thread
        hand-off; when the database is busy (or not SQLite) this raises
        QuickReadUnavailable and the caller offloads to a thread instead.
        """
        if self._sqlite_path is None:
            raise QuickReadUnavailable("not an SQLite file database")
        conn: sqlite3.Connection | None = getattr(self._local, "quick", None)
        try:
            if conn is None:
                conn = sqlite3.connect(
                    self._sqlite_path, timeout=0, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA query_only=1")
                self._local.quick = conn
            row = conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise QuickReadUnavailable(str(exc)) from exc
        return None if row is None else tuple(row)

    def fetch_all(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self._raw(sql, params, one=False)

    def _raw(self, sql: str, params: Mapping[str, Any], *, one: bool) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":
            return self._raw_once(sql, params, one=one, autocommit=False)
        sql = to_pyformat(sql)
        # One statement needs no transaction: in autocommit mode it is one round
        # trip instead of three (BEGIN, query, ROLLBACK).
        for attempt in range(_READ_ATTEMPTS):
            try:
                return self._raw_once(sql, params, one=one, autocommit=True)
            except _ConnectionLost as lost:
                # The server ended the connection between our checks: reads are safe
                # to retry on another one.
                if attempt == _READ_ATTEMPTS - 1:
                    raise lost.__cause__ or lost from None
                log.info("database connection lost during a read: retrying")
        raise AssertionError("unreachable")

    def _raw_once(
        self, sql: str, params: Mapping[str, Any], *, one: bool, autocommit: bool
    ) -> list[tuple[Any, ...]]:
        conn = self.engine.raw_connection()
        driver: Any = conn.driver_connection
        try:
            if autocommit:
                driver.autocommit = True
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params)
                if one:
                    row = cursor.fetchone()
                    rows = [] if row is None else [tuple(row)]
                else:
                    rows = [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
        except Exception as exc:
            if autocommit and driver.closed:
                conn.invalidate(exc)
                raise _ConnectionLost(str(exc)) from exc
            raise
        finally:
            if autocommit and not driver.closed:
                # The pool's other users expect transactions.
                try:
                    driver.autocommit = False
                except Exception as exc:
                    conn.invalidate(exc)
            conn.close()
        return rows

    def dispose(self) -> None:
        if self._group is not None:
            self._group.close()
        self.engine.dispose()


def rows_affected(result: Any) -> int:
    """Row count of an UPDATE/DELETE result (typed as a generic Result by SQLAlchemy)."""
    count = getattr(result, "rowcount", 0)
    return int(count) if count is not None else 0
