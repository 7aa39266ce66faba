"""A refresh token redeemed while another process (a replica, its clock a little ahead)
purges it as expired: the redemption is refused like any expired token's, instead of
failing with a 500 (SQLAlchemy's StaleDataError on the touch that found no row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from auth import accounts
from auth.models import RefreshToken
from auth.passwords import Passwords
from auth.policy import Principal
from auth.refresh import issue_refresh_token, purge_refresh_tokens, redeem_refresh_token

START = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=1)


def test_a_token_purged_while_redeemed_is_refused(engine: Engine, passwords: Passwords) -> None:
    sessions = sessionmaker(engine)
    with sessions() as setup:
        user = accounts.add_user(setup, passwords, "alice", "pw")
        alice = Principal(user.username, user.id, user.is_admin)
        secret = issue_refresh_token(setup, alice, "registry", "docker", TTL, START)
        setup.commit()
    purged: list[int] = []

    def purge_from_another_process(*args: Any) -> None:
        # Once the redeeming session has read the token, before it touches it: another
        # process, whose clock says the token has just expired, purges it and commits.
        statement = str(args[2])
        if not purged and statement.lstrip().upper().startswith("SELECT") and "users" in statement:
            purged.append(1)
            with sessions() as other:
                purge_refresh_tokens(other, START + TTL)
                other.commit()

    event.listen(engine, "before_cursor_execute", purge_from_another_process)
    try:
        with sessions() as redeeming:
            # Its own clock: 2 s before expiry, and the token unused for long (touched).
            now = START + TTL - timedelta(seconds=2)
            assert redeem_refresh_token(redeeming, secret, "registry", now) is None
            redeeming.commit()
    finally:
        event.remove(engine, "before_cursor_execute", purge_from_another_process)
    assert purged
    with sessions() as check:
        assert list(check.scalars(select(RefreshToken))) == []
