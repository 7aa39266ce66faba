"""The tables that clients fill (failed logins, refresh tokens) are emptied of dead rows by
the same calls that add rows: nothing else has to remember to purge them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import accounts
from auth.factory import build_auth
from auth.models import LoginFailure, RefreshToken
from auth.refresh import revoke_refresh_token
from auth.service import TokenService
from auth.settings import AuthSettings, ThrottleSettings
from auth.throttle import LoginThrottle

START = datetime(2030, 1, 1, tzinfo=UTC)


def _rows(session: Session) -> set[tuple[str, str]]:
    return {(r.username, r.client_ip) for r in session.scalars(select(LoginFailure))}


def test_failed_logins_clear_out_rows_whose_window_and_lock_are_over(session: Session) -> None:
    throttle = LoginThrottle(
        ThrottleSettings(max_failures=3, window_seconds=60, lockout_seconds=120)
    )
    for n in range(5):  # a guesser trying names once each
        throttle.record_failure(session, f"guess{n}", "10.0.0.1", START)
    for _ in range(3):  # locked until START + 120 s
        throttle.record_failure(session, "locked", "10.0.0.2", START)
    for _ in range(2):
        throttle.record_failure(session, "recent", "10.0.0.2", START + timedelta(seconds=50))
    session.commit()
    assert len(_rows(session)) == 9

    later = START + timedelta(seconds=61)
    throttle.record_failure(session, "fresh", "10.0.0.3", later)
    session.commit()
    assert _rows(session) == {
        ("locked", "10.0.0.2"),  # its window is over, its lock is not
        ("recent", "10.0.0.2"),  # the address's own count started at START: gone
        ("fresh", "10.0.0.3"),
        ("*", "10.0.0.3"),
    }
    # What stayed still counts: the lock holds and the recent failures add up.
    assert throttle.retry_after(session, "locked", "10.0.0.2", later) == 59
    assert throttle.record_failure(session, "recent", "10.0.0.2", later) == 120


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_logins_clear_out_expired_and_revoked_refresh_tokens(
    make_settings: Callable[..., AuthSettings], session: Session
) -> None:
    comp = build_auth(make_settings(refresh_ttl_seconds=3 * 3600))
    assert comp.issuer is not None
    accounts.add_user(session, comp.passwords, "alice", "pw")
    now = [START]
    service = TokenService(
        comp.settings, comp.issuer, comp.passwords, comp.policy, comp.throttle,
        clock=lambda: now[0],
    )  # fmt: skip
    basic = "Basic " + base64.b64encode(b"alice:pw").decode()
    offline = [("offline_token", "true"), ("client_id", "docker")]

    def login(at: timedelta) -> str:
        now[0] = START + at
        answer = service.handle_get(session, offline, basic, "10.0.0.1")
        assert answer.status == 200, answer.body
        session.commit()
        return str(answer.body["refresh_token"])

    expired = login(timedelta(0))
    revoked = login(timedelta(0))
    assert revoke_refresh_token(session, revoked)
    also_expired = login(timedelta(minutes=30))
    kept = login(timedelta(hours=2))
    newest = login(timedelta(hours=4))

    stored = set(session.scalars(select(RefreshToken.secret_digest)))
    assert stored == {_digest(kept), _digest(newest)}
    assert _digest(expired) not in stored and _digest(also_expired) not in stored
    refreshed = service.handle_post(
        session,
        [("grant_type", "refresh_token"), ("refresh_token", kept), ("service", "registry.example")],
        "10.0.0.1",
    )
    assert refreshed.status == 200, refreshed.body
