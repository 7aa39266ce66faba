"""Robot accounts: named, scoped, expiring access tokens usable as a `docker login` password.

The secret is random (256 bits), shown once, and stored as its SHA-256: a slow hash
adds nothing for such entropy and a digest allows an indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from auth.accounts import AccountError, get_user
from auth.models import (
    PermissionRule,
    RefreshToken,
    RobotScope,
    RobotToken,
    User,
    utcnow,
)
from auth.patterns import format_actions, parse_actions, validate_pattern

SECRET_PREFIX = "ldg_"  # noqa: S105 (a marker, not a secret)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class RobotInfo:
    id: int
    login: str  # `owner+name`, the docker login username
    owner: str
    name: str
    scopes: tuple[tuple[str, frozenset[str]], ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    admin: bool = False  # holds the admin scope (see `robot_is_admin`)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_robot_secret(password: str) -> bool:
    return password.startswith(SECRET_PREFIX)


def _info(robot: RobotToken) -> RobotInfo:
    return RobotInfo(
        id=robot.id,
        login=f"{robot.owner.username}+{robot.name}",
        owner=robot.owner.username,
        name=robot.name,
        scopes=tuple((s.repository_pattern, parse_actions(s.actions)) for s in robot.scopes),
        created_at=robot.created_at,
        expires_at=robot.expires_at,
        revoked_at=robot.revoked_at,
        last_used_at=robot.last_used_at,
        admin=robot.admin,
    )


def create_robot(
    session: Session,
    owner: str,
    name: str,
    scopes: Sequence[tuple[str, str | list[str]]],
    expires_at: datetime | None = None,
    *,
    admin: bool = False,
) -> tuple[RobotInfo, str]:
    """Create a robot token; returns its info and the secret, which is never stored.

    ``admin`` gives the admin scope (the admin API), which only an admin's robot can hold.
    """
    user = get_user(session, owner)
    if user is None:
        raise AccountError(f"no such user {owner!r}")
    if not _NAME_RE.fullmatch(name):
        raise AccountError(f"invalid robot name {name!r}")
    if not scopes and not admin:
        raise AccountError("a robot token needs at least one repository scope or the admin scope")
    if admin and not user.is_admin:
        raise AccountError(f"only an admin's robot can hold the admin scope; {owner!r} is not one")
    existing = session.scalar(
        select(RobotToken).where(RobotToken.owner_id == user.id, RobotToken.name == name)
    )
    if existing is not None:
        raise AccountError(f"robot {owner}+{name} already exists")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    robot = RobotToken(
        name=name,
        owner_id=user.id,
        secret_digest=digest(secret),
        expires_at=expires_at,
        admin=admin,
    )
    robot.scopes = [
        RobotScope(
            repository_pattern=validate_pattern(pattern),
            actions=format_actions(parse_actions(actions)),
        )
        for pattern, actions in scopes
    ]
    session.add(robot)
    session.flush()
    return _info(robot), secret


def _find(session: Session, login: str) -> RobotToken:
    owner, _, name = login.partition("+")
    robot = session.scalar(
        select(RobotToken).join(User).where(User.username == owner, RobotToken.name == name)
    )
    if robot is None:
        raise AccountError(f"no such robot {login!r}")
    return robot


def revoke_robot(session: Session, login: str) -> None:
    robot = _find(session, login)
    if robot.revoked_at is None:
        robot.revoked_at = utcnow()
    session.flush()


def remove_robot(session: Session, login: str) -> None:
    robot = _find(session, login)
    # Explicit: SQLite only honours ON DELETE CASCADE with foreign_keys=ON.
    session.execute(delete(RefreshToken).where(RefreshToken.robot_id == robot.id))
    session.execute(
        delete(PermissionRule).where(
            PermissionRule.subject_type == "robot", PermissionRule.subject_id == robot.id
        )
    )
    session.delete(robot)
    session.flush()


def list_robots(session: Session, owner: str | None = None) -> list[RobotInfo]:
    query = select(RobotToken).join(User).order_by(User.username, RobotToken.name)
    if owner is not None:
        query = query.where(User.username == owner)
    return [_info(r) for r in session.scalars(query)]


def robot_usable(robot: RobotToken, now: datetime) -> bool:
    return (
        robot.revoked_at is None
        and (robot.expires_at is None or robot.expires_at > now)
        and not robot.owner.disabled
    )


def robot_is_admin(robot: RobotToken) -> bool:
    """The admin scope counts only while the owner is an admin: a robot never exceeds it."""
    return robot.admin and robot.owner.is_admin


def get_robot(session: Session, robot_id: int) -> RobotToken | None:
    return session.get(RobotToken, robot_id)


def find_by_secret(session: Session, secret: str) -> RobotToken | None:
    return session.scalar(select(RobotToken).where(RobotToken.secret_digest == digest(secret)))
