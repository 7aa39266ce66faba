"""``gc_runs`` leases: a live pass keeps its row "running" past its lease by renewing
it; a row whose lease ran out reads "abandoned" in the admin status and history
(without them writing) and is marked so by the next pass. Leases follow the
database's clock, not the process's. (The ``kill -9`` case with a real ``lading gc``
is in test_gc_crash.py.)"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from gcenv import Env
from sqlalchemy import event, select, text, update

from registry.db.engine import Database
from registry.db.models import GcRun, utcnow
from registry.services.admin_gc import GcControl
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.gc_runs import ABANDONED_ERROR, RunHistory, db_clock

LEASE = 0.4


def _statuses(env: Env) -> list[str]:
    return [str(r[0]) for r in env.db.fetch_all("SELECT status FROM gc_runs ORDER BY id", {})]


def test_a_live_pass_renews_its_lease(env: Env) -> None:
    for i in range(12):
        env.push_image("lease/app", None, [f"layer {i}\n".encode() * 10])
    slow = GarbageCollector(
        env.db,
        env.driver,
        review_delay=0,
        upload_purge_after=3600,
        task_pause=0.2,  # about 5 s over 24 objects: many leases long
        batch_size=1,
        lease_seconds=LEASE,
    )
    thread = threading.Thread(target=slow.run)
    thread.start()
    try:
        time.sleep(LEASE * 5)
        assert thread.is_alive(), "the pass ended before outliving its first lease"
        other = env.collector()
        assert other.history.mark_abandoned() == 0
        assert _statuses(env) == ["running"]
    finally:
        thread.join(60)
    assert _statuses(env) == ["ok"]


def _row(env: Env, run_id: int) -> GcRun:
    with env.db.read() as session:
        row = session.scalars(select(GcRun).where(GcRun.id == run_id)).one()
        session.expunge(row)
        return row


def test_a_run_whose_lease_ran_out_reads_abandoned_and_the_next_pass_marks_it(env: Env) -> None:
    collector = env.collector()
    run_id = collector.history.start(dry_run=False, trigger="cli")  # then "killed"
    with env.db.write() as session:
        session.execute(
            update(GcRun)
            .where(GcRun.id == run_id)
            .values(lease_until=db_clock(session) - dt.timedelta(seconds=1))
        )
    expired = _row(env, run_id)
    control = GcControl(env.db, collector, AuditService(env.db))
    status = control.status()
    assert status.running is None
    assert status.last is not None and status.last.id == run_id
    assert status.last.status == "abandoned" and status.last.error == ABANDONED_ERROR
    history, _ = control.runs(10)
    assert [(r.id, r.status) for r in history] == [(run_id, "abandoned")]
    # Reading wrote nothing: the row is still "running", as the killed pass left it.
    after_reads = _row(env, run_id)
    assert (after_reads.status, after_reads.finished_at, after_reads.error) == (
        "running",
        None,
        None,
    )
    assert after_reads.lease_until == expired.lease_until
    # It finished, at the latest, when its lease ran out.
    assert status.last.finished_at == expired.lease_until
    collector.run()
    assert _statuses(env) == ["abandoned", "ok"]
    # The stored row says what the reads said.
    marked = _row(env, run_id)
    assert (marked.status, marked.finished_at, marked.error) == (
        "abandoned",
        status.last.finished_at,
        ABANDONED_ERROR,
    )


AHEAD = dt.timedelta(days=1)


def _database_a_day_ahead(env: Env) -> Database:
    """The test's database as seen through connections whose SQL clock runs a day
    ahead of this process's: as if the database (or the pass) ran on another host."""
    ahead = Database(str(env.db.engine.url.render_as_string(hide_password=False)))
    if not ahead.is_sqlite:
        with env.db.write() as session:
            session.execute(text("CREATE SCHEMA skewed_clock"))
            session.execute(
                text(
                    "CREATE FUNCTION skewed_clock.clock_timestamp() RETURNS timestamptz"
                    " LANGUAGE sql AS $$ SELECT pg_catalog.clock_timestamp() + interval '1 day' $$"
                )
            )

    @event.listens_for(ahead.engine, "connect")
    def _skew(dbapi_connection: Any, _record: Any) -> None:
        if ahead.is_sqlite:
            # An application function of a built-in's name replaces it on this connection.
            def julianday(value: str) -> float:
                assert value == "now", value
                return time.time() / 86400 + 2440587.5 + AHEAD.days

            dbapi_connection.create_function("julianday", 1, julianday)
        else:
            # pg_catalog named in the path is searched where named, after ours.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET search_path = skewed_clock, pg_catalog, public")
            dbapi_connection.commit()

    return ahead


def test_leases_follow_the_database_clock_not_the_process_clock(env: Env) -> None:
    ahead = _database_a_day_ahead(env)
    try:
        # A row whose lease ends in an hour by this process's clock, but ran out a day
        # ago by the database's: it reads abandoned, and a writer marks it.
        history = RunHistory(env.db, lease_seconds=60)
        run_id = history.start(dry_run=False, trigger="cli")
        with env.db.write() as session:
            session.execute(
                update(GcRun)
                .where(GcRun.id == run_id)
                .values(lease_until=utcnow() + dt.timedelta(hours=1))
            )
        collector = GarbageCollector(ahead, env.driver, review_delay=0, upload_purge_after=3600)
        status = GcControl(ahead, collector, AuditService(ahead)).status()
        assert status.running is None
        assert status.last is not None and status.last.status == "abandoned"
        assert _statuses(env) == ["running"]
        assert RunHistory(ahead, lease_seconds=60).mark_abandoned() == 1
        assert _statuses(env) == ["abandoned"]

        # A pass started there stamps its row with the database's time, and readers
        # on the same database take it for alive however far this process's clock is.
        started = RunHistory(ahead, lease_seconds=60).start(dry_run=True, trigger="cli")
        row = _row(env, started)
        assert row.lease_until is not None
        assert row.started_at - utcnow() > AHEAD - dt.timedelta(minutes=5)
        assert row.lease_until - row.started_at == dt.timedelta(seconds=60)
        status = GcControl(ahead, collector, AuditService(ahead)).status()
        assert status.running is not None and status.running.id == started
    finally:
        ahead.dispose()
