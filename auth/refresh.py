"""OAuth2 refresh tokens: random secrets stored as SHA-256, bound to a subject and service."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from auth.authn import principal_for
from auth.models import RefreshToken, utcnow
from auth.policy import Principal

# Touch `last_used_at` at most this often, to spare a write on every refresh.
_TOUCH_EVERY = timedelta(minutes=5)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_refresh_token(
    session: Session,
    principal: Principal,
    service: str,
    client_id: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> str:
    if principal.user_id is None:
        raise ValueError("anonymous callers get no refresh token")
    now = now or utcnow()
    secret = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            secret_digest=_digest(secret),
            user_id=principal.user_id,
            robot_id=principal.robot_id,
            service=service,
            client_id=client_id[:255],
            created_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    return secret


def redeem_refresh_token(
    session: Session, secret: str, service: str, now: datetime | None = None
) -> Principal | None:
    """The subject a refresh token stands for, or None if unknown/expired/revoked."""
    now = now or utcnow()
    if len(secret) > 512:
        return None
    row = session.scalar(select(RefreshToken).where(RefreshToken.secret_digest == _digest(secret)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.service != service:
        return None
    principal = principal_for(session, row.user_id, row.robot_id, now)
    if principal is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
        touched = session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        if not int(getattr(touched, "rowcount", 0) or 0):
            # Purged since we read it by a process whose clock saw it expired (or
            # revoked meanwhile): refused like any expired token.
            session.expunge(row)
            return None
    return principal


def revoke_refresh_token(session: Session, secret: str) -> bool:
    row = session.scalar(select(RefreshToken).where(RefreshToken.secret_digest == _digest(secret)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def purge_refresh_tokens(session: Session, now: datetime | None = None) -> int:
    """Delete expired rows and revoked ones (housekeeping; call from a periodic task)."""
    now = now or utcnow()
    result = session.execute(
        delete(RefreshToken).where(
            (RefreshToken.expires_at <= now) | RefreshToken.revoked_at.is_not(None)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
