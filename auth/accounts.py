"""Users, groups, permission rules and public patterns (the CLI and admin API use these).

Functions take a SQLAlchemy `Session` and flush but never commit: the caller owns
the transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from auth.models import (
    Group,
    GroupMember,
    PermissionRule,
    PublicRepository,
    RefreshToken,
    RobotToken,
    User,
    utcnow,
)
from auth.passwords import Passwords
from auth.patterns import format_actions, parse_actions, validate_pattern
from auth.settings import AuthSettings

SubjectType = Literal["user", "group", "robot"]
# Usernames double as personal namespaces, so they follow the repository component grammar.
_USERNAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AccountError(ValueError):
    """A refused account operation (unknown user, duplicate name, bad input)."""


@dataclass(frozen=True)
class UserInfo:
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime
    groups: tuple[str, ...]


@dataclass(frozen=True)
class RuleInfo:
    id: int
    subject_type: str
    subject: str
    repository_pattern: str
    actions: frozenset[str]


def validate_username(username: str) -> str:
    if len(username) > 64 or not _USERNAME_RE.fullmatch(username):
        raise AccountError(
            f"invalid username {username!r}: lowercase letters, digits and . _ - separators"
        )
    return username


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def _require_user(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise AccountError(f"no such user {username!r}")
    return user


def add_user(
    session: Session, passwords: Passwords, username: str, password: str, *, admin: bool = False
) -> User:
    validate_username(username)
    if get_user(session, username) is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, password_hash=passwords.hash(password), is_admin=admin)
    session.add(user)
    session.flush()
    return user


def revoke_refresh_tokens(session: Session, user: User) -> int:
    """Revoke every live refresh token of `user` (after passwd, disable, rm)."""
    tokens = session.scalars(
        select(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
        )
    ).all()
    now = utcnow()
    for token in tokens:
        token.revoked_at = now
    session.flush()
    return len(tokens)


def set_password(session: Session, passwords: Passwords, username: str, password: str) -> None:
    user = _require_user(session, username)
    user.password_hash = passwords.hash(password)
    revoke_refresh_tokens(session, user)


def set_admin(session: Session, username: str, admin: bool) -> None:
    _require_user(session, username).is_admin = admin
    session.flush()


def set_disabled(session: Session, username: str, disabled: bool) -> None:
    user = _require_user(session, username)
    user.disabled = disabled
    if disabled:
        revoke_refresh_tokens(session, user)
    session.flush()


def remove_user(session: Session, username: str) -> None:
    """Delete a user with its memberships, robot tokens, refresh tokens and rules."""
    user = _require_user(session, username)
    robot_ids = list(session.scalars(select(RobotToken.id).where(RobotToken.owner_id == user.id)))
    session.execute(
        delete(PermissionRule).where(
            PermissionRule.subject_type == "user", PermissionRule.subject_id == user.id
        )
    )
    if robot_ids:
        session.execute(
            delete(PermissionRule).where(
                PermissionRule.subject_type == "robot", PermissionRule.subject_id.in_(robot_ids)
            )
        )
    # Explicit deletes: SQLite only honours ON DELETE CASCADE with foreign_keys=ON.
    session.execute(delete(RefreshToken).where(RefreshToken.user_id == user.id))
    for robot in session.scalars(select(RobotToken).where(RobotToken.owner_id == user.id)):
        session.delete(robot)
    session.delete(user)
    session.flush()


def list_users(session: Session) -> list[UserInfo]:
    users = session.scalars(select(User).order_by(User.username)).all()
    out = []
    for user in users:
        groups = tuple(sorted(m.group.name for m in user.memberships))
        out.append(UserInfo(user.username, user.is_admin, user.disabled, user.created_at, groups))
    return out


def ensure_admin(session: Session, passwords: Passwords, settings: AuthSettings) -> bool:
    """Create the configured first admin if that user does not exist yet.

    An existing account is left alone so a restart never resets a changed password.
    """
    if settings.admin_username is None or settings.admin_password is None:
        return False
    if get_user(session, settings.admin_username) is not None:
        return False
    add_user(
        session,
        passwords,
        settings.admin_username,
        settings.admin_password.get_secret_value(),
        admin=True,
    )
    return True


# --- groups ---------------------------------------------------------------------------


def list_groups(session: Session) -> list[tuple[str, tuple[str, ...]]]:
    """Every group's name and its members' usernames, by name."""
    groups = session.scalars(select(Group).order_by(Group.name)).all()
    return [(g.name, tuple(sorted(m.user.username for m in g.members))) for g in groups]


def get_group(session: Session, name: str) -> Group | None:
    return session.scalar(select(Group).where(Group.name == name))


def create_group(session: Session, name: str) -> Group:
    if not _GROUP_RE.fullmatch(name):
        raise AccountError(f"invalid group name {name!r}")
    if get_group(session, name) is not None:
        raise AccountError(f"group {name!r} already exists")
    group = Group(name=name)
    session.add(group)
    session.flush()
    return group


def _require_group(session: Session, name: str) -> Group:
    group = get_group(session, name)
    if group is None:
        raise AccountError(f"no such group {name!r}")
    return group


def remove_group(session: Session, name: str) -> None:
    group = _require_group(session, name)
    session.execute(
        delete(PermissionRule).where(
            PermissionRule.subject_type == "group", PermissionRule.subject_id == group.id
        )
    )
    session.delete(group)
    session.flush()


def add_member(session: Session, group_name: str, username: str) -> None:
    group = _require_group(session, group_name)
    user = _require_user(session, username)
    if session.get(GroupMember, (group.id, user.id)) is None:
        session.add(GroupMember(group_id=group.id, user_id=user.id))
        session.flush()


def remove_member(session: Session, group_name: str, username: str) -> None:
    group = _require_group(session, group_name)
    user = _require_user(session, username)
    member = session.get(GroupMember, (group.id, user.id))
    if member is not None:
        session.delete(member)
        session.flush()


# --- permission rules -----------------------------------------------------------------


def _subject_id(session: Session, subject_type: SubjectType, subject: str) -> int:
    if subject_type == "user":
        return _require_user(session, subject).id
    if subject_type == "group":
        return _require_group(session, subject).id
    owner, _, name = subject.partition("+")
    robot = session.scalar(
        select(RobotToken).join(User).where(User.username == owner, RobotToken.name == name)
    )
    if robot is None:
        raise AccountError(f"no such robot {subject!r} (expected owner+name)")
    return robot.id


def grant(
    session: Session,
    subject_type: SubjectType,
    subject: str,
    repository_pattern: str,
    actions: str | list[str],
) -> PermissionRule:
    """Add (or widen) a rule; `subject` is a username, group name or `owner+robot`."""
    validate_pattern(repository_pattern)
    wanted = parse_actions(actions)
    subject_id = _subject_id(session, subject_type, subject)
    rule = session.scalar(
        select(PermissionRule).where(
            PermissionRule.subject_type == subject_type,
            PermissionRule.subject_id == subject_id,
            PermissionRule.repository_pattern == repository_pattern,
        )
    )
    if rule is None:
        rule = PermissionRule(
            subject_type=subject_type,
            subject_id=subject_id,
            repository_pattern=repository_pattern,
            actions=format_actions(wanted),
        )
        session.add(rule)
    else:
        rule.actions = format_actions(parse_actions(rule.actions) | wanted)
    session.flush()
    return rule


def revoke_rule(session: Session, rule_id: int) -> None:
    rule = session.get(PermissionRule, rule_id)
    if rule is None:
        raise AccountError(f"no such rule {rule_id}")
    session.delete(rule)
    session.flush()


def list_rules(session: Session) -> list[RuleInfo]:
    names: dict[tuple[str, int], str] = {}
    for user in session.scalars(select(User)):
        names[("user", user.id)] = user.username
    for group in session.scalars(select(Group)):
        names[("group", group.id)] = group.name
    for robot in session.scalars(select(RobotToken)):
        names[("robot", robot.id)] = f"{robot.owner.username}+{robot.name}"
    rules = session.scalars(select(PermissionRule).order_by(PermissionRule.id)).all()
    return [
        RuleInfo(
            r.id,
            r.subject_type,
            names.get((r.subject_type, r.subject_id), "?"),
            r.repository_pattern,
            parse_actions(r.actions),
        )
        for r in rules
    ]


# --- public repositories --------------------------------------------------------------


def add_public_pattern(session: Session, pattern: str) -> None:
    validate_pattern(pattern)
    if session.scalar(select(PublicRepository).where(PublicRepository.pattern == pattern)) is None:
        session.add(PublicRepository(pattern=pattern))
        session.flush()


def remove_public_pattern(session: Session, pattern: str) -> None:
    session.execute(delete(PublicRepository).where(PublicRepository.pattern == pattern))
    session.flush()


def list_public_patterns(session: Session) -> list[str]:
    query = select(PublicRepository.pattern).order_by(PublicRepository.pattern)
    return list(session.scalars(query))
