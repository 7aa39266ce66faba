"""A failed login counted while another process (a replica) purges that very row, whose
window it saw over: the count starts afresh instead of failing the request with a 500
(SQLAlchemy's StaleDataError on the UPDATE that found no row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from auth.models import LoginFailure
from auth.settings import ThrottleSettings
from auth.throttle import LoginThrottle

START = datetime(2030, 1, 1, tzinfo=UTC)
SETTINGS = ThrottleSettings(max_failures=2, window_seconds=60, lockout_seconds=120)


@pytest.mark.parametrize(
    "a_seconds",
    # A sees the window over (it resets the row), or, its clock 2 s behind B's, not quite
    # (it increments the row in SQL): the row B purged is gone either way.
    [61, 59],
    ids=["window-over", "clock-behind"],
)
def test_a_row_purged_between_read_and_count_starts_a_new_count(
    engine: Engine, a_seconds: int
) -> None:
    sessions = sessionmaker(engine)
    with sessions() as setup:
        LoginThrottle(SETTINGS).record_failure(setup, "alice", "10.0.0.1", START)
        setup.commit()
    later = START + timedelta(seconds=61)  # the window of alice's row is over
    a_now = START + timedelta(seconds=a_seconds)
    counting, purging = LoginThrottle(SETTINGS), LoginThrottle(SETTINGS)
    with sessions() as replica_a, sessions() as replica_b:
        # Replica A has read alice's row (record_failure's first step) when replica B,
        # counting another failure, purges the rows whose window is over, and commits.
        read = replica_a.get(LoginFailure, ("alice", "10.0.0.1"))  # held, as record_failure does
        assert read is not None
        purging.record_failure(replica_b, "bob", "10.0.0.2", later)
        replica_b.commit()
        assert counting.record_failure(replica_a, "alice", "10.0.0.1", a_now) is None
        replica_a.commit()
        assert counting.record_failure(replica_a, "alice", "10.0.0.1", a_now) == 120
        replica_a.commit()
    with sessions() as check:
        rows = {(r.username, r.client_ip): r.failures for r in check.scalars(select(LoginFailure))}
    assert rows == {
        ("alice", "10.0.0.1"): 2,
        ("*", "10.0.0.1"): 2,
        ("bob", "10.0.0.2"): 1,
        ("*", "10.0.0.2"): 1,
    }
