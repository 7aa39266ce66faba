"""Failed-login throttling per (username, client IP) and per client IP, stored in the
database so that replicas agree. Increments are atomic in SQL; window resets are
last-writer-wins."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.models import LoginFailure, utcnow
from auth.settings import ThrottleSettings

# The per-IP counter's username: no account name can be "*".
_ANY_USER = "*"
# The login name a wrong admin API token counts under: no account name can hold "#".
ADMIN_TOKEN_LOGIN = "#admin-token"  # noqa: S105 (a counter name, not a secret)


class LoginThrottle:
    def __init__(self, settings: ThrottleSettings) -> None:
        self._max = settings.max_failures
        self._max_per_ip = settings.max_failures_per_ip
        self._window = timedelta(seconds=settings.window_seconds)
        self._lockout = timedelta(seconds=settings.lockout_seconds)
        # Failures are what add rows (a guesser's every name and address), so they also
        # clear out the rows whose window and lock are over, at most once per window.
        self._purge_due: datetime | None = None

    @staticmethod
    def _key(username: str, client_ip: str) -> tuple[str, str]:
        return username.lower()[:255], client_ip[:64]

    def retry_after(
        self, session: Session, username: str, client_ip: str, now: datetime | None = None
    ) -> int | None:
        """Seconds until this pair may try again (the pair or its whole IP is locked),
        or None when neither is locked."""
        now = now or utcnow()
        waits = []
        for key in (self._key(username, client_ip), self._key(_ANY_USER, client_ip)):
            row = session.get(LoginFailure, key)
            if row is not None and row.locked_until is not None and row.locked_until > now:
                waits.append(max(1, math.ceil((row.locked_until - now).total_seconds())))
        return max(waits) if waits else None

    def record_failure(
        self, session: Session, username: str, client_ip: str, now: datetime | None = None
    ) -> int | None:
        """Count a failure for the pair and for the IP; returns the retry-after seconds
        if this locks either."""
        now = now or utcnow()
        pair = self._count(session, self._key(username, client_ip), self._max, now)
        # Not reset by a success: one valid account must not reopen the IP to guessing.
        per_ip = self._count(session, self._key(_ANY_USER, client_ip), self._max_per_ip, now)
        # After counting: the rows just counted are in a current window and stay.
        if self._purge_due is None or now >= self._purge_due:
            self._purge_due = now + self._window
            self.purge(session, now)
        waits = [w for w in (pair, per_ip) if w is not None]
        return max(waits) if waits else None

    def _count(
        self, session: Session, key: tuple[str, str], limit: int, now: datetime
    ) -> int | None:
        row = session.get(LoginFailure, key)
        if row is not None and not self._bump(session, row, now):
            row = None  # purged meanwhile by another process: count afresh
        if row is None:
            row = LoginFailure(username=key[0], client_ip=key[1], window_start=now, failures=1)
            try:
                # Savepoint: a replica may insert the same pair at the same moment.
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                row = session.get(LoginFailure, key, populate_existing=True)
                if row is None or not self._bump(session, row, now):
                    return None  # pragma: no cover - deleted again in between
        locked = None
        if row.failures >= limit:
            row.locked_until = now + self._lockout
            locked = math.ceil(self._lockout.total_seconds())
        session.flush()
        return locked

    def _bump(self, session: Session, row: LoginFailure, now: datetime) -> bool:
        """Count one more failure on ``row``; False if the row is gone: another process
        purged it after we read it (its window over by that process's clock)."""
        values: dict[str, object] = {"failures": 1, "window_start": now, "locked_until": None}
        if now - row.window_start <= self._window:
            # Increment in SQL so concurrent failures on other replicas are not lost.
            values = {"failures": LoginFailure.failures + 1}
        result = session.execute(
            update(LoginFailure)
            .where(LoginFailure.username == row.username, LoginFailure.client_ip == row.client_ip)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        # Once updated, the row is locked until commit (both databases): no purge can
        # take it from under the lock that record_failure may still set.
        if not int(getattr(result, "rowcount", 0) or 0):
            session.expunge(row)
            return False
        session.refresh(row, ["failures", "window_start", "locked_until"])
        return True

    def reset(self, session: Session, username: str, client_ip: str) -> None:
        row = session.get(LoginFailure, self._key(username, client_ip))
        if row is not None:
            session.delete(row)
            session.flush()

    def purge(self, session: Session, now: datetime | None = None) -> None:
        """Drop rows whose window and lock are both over (``record_failure`` calls it)."""
        now = now or utcnow()
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.window_start < now - self._window,
                (LoginFailure.locked_until.is_(None)) | (LoginFailure.locked_until < now),
            )
        )
