"""``gc_runs`` leases: a live pass keeps its row "running" past its lease by renewing
it; a row whose lease ran out is marked "abandoned" by the next pass or status query.
(The ``kill -9`` case with a real ``lading gc`` is in test_gc_crash.py.)"""

from __future__ import annotations

import datetime as dt
import threading
import time

from gcenv import Env
from sqlalchemy import update

from registry.db.models import GcRun, utcnow
from registry.services.admin_gc import GcControl
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.gc_runs import ABANDONED_ERROR

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


def test_a_run_whose_lease_ran_out_is_abandoned(env: Env) -> None:
    collector = env.collector()
    run_id = collector.history.start(dry_run=False, trigger="cli")  # then "killed"
    with env.db.write() as session:
        session.execute(
            update(GcRun)
            .where(GcRun.id == run_id)
            .values(lease_until=utcnow() - dt.timedelta(seconds=1))
        )
    control = GcControl(env.db, collector, AuditService(env.db))
    status = control.status()
    assert status.running is None
    assert status.last is not None and status.last.id == run_id
    assert status.last.status == "abandoned" and status.last.error == ABANDONED_ERROR
    assert status.last.finished_at is not None
    collector.run()
    assert _statuses(env) == ["abandoned", "ok"]
