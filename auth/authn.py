"""Credential checks: user passwords and robot secrets → `Principal`."""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy.orm import Session

from auth.accounts import get_user
from auth.models import RobotToken, User, utcnow
from auth.passwords import Passwords
from auth.policy import Principal
from auth.robots import find_by_secret, looks_like_robot_secret, robot_usable


def _user_principal(user: User) -> Principal:
    return Principal(user.username, user.id, user.is_admin)


def robot_principal(robot: RobotToken) -> Principal:
    owner = robot.owner
    return Principal(owner.username, owner.id, owner.is_admin, robot.id, robot.name)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def authenticate(
    session: Session,
    passwords: Passwords,
    username: str,
    password: str,
    now: datetime | None = None,
) -> Principal | None:
    """A user by password, or a robot by secret (username `owner+name` or `owner`).

    Unknown users still pay for an argon2 verification so timing reveals nothing.
    """
    now = now or utcnow()
    if looks_like_robot_secret(password):
        robot = find_by_secret(session, password)
        if robot is not None and robot_usable(robot, now):
            login = f"{robot.owner.username}+{robot.name}"
            if _same(username, login) or _same(username, robot.owner.username):
                robot.last_used_at = now
                session.flush()
                return robot_principal(robot)
        # Fall through: a user's real password might start with the prefix.
    user = get_user(session, username)
    ok = passwords.verify(user.password_hash if user else None, password)
    if not ok or user is None or user.disabled:
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
        session.flush()
    return _user_principal(user)


def principal_for(
    session: Session, user_id: int, robot_id: int | None, now: datetime | None = None
) -> Principal | None:
    """Re-resolve a stored subject (refresh tokens); None when it lost its standing."""
    now = now or utcnow()
    user = session.get(User, user_id)
    if user is None or user.disabled:
        return None
    if robot_id is None:
        return _user_principal(user)
    robot = session.get(RobotToken, robot_id)
    if robot is None or robot.owner_id != user.id or not robot_usable(robot, now):
        return None
    return robot_principal(robot)
