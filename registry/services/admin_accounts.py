"""Accounts, groups, permission rules, robot tokens and public patterns for the admin API.

Each change runs in one transaction with its audit entry, so the log never misses a
change nor records one that did not happen. The `auth` package does the work; this layer
turns its refusals into 404 (unknown), 409 (duplicate or conflicting state) and 400.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth import accounts, robots
from auth.accounts import AccountError, RuleInfo, SubjectType
from auth.models import Group, GroupMember, PermissionRule, PublicRepository, RobotToken, User
from auth.passwords import Passwords
from auth.patterns import format_actions, parse_actions, validate_pattern
from auth.robots import RobotInfo
from registry.db.engine import Database
from registry.domain.errors import CONFLICT, NOT_FOUND, REQUEST_INVALID, RegistryError
from registry.services.audit import AuditService

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserView:
    username: str
    admin: bool
    disabled: bool
    created_at: dt.datetime
    groups: tuple[str, ...]
    robots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupView:
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PublicPattern:
    id: int
    pattern: str


def _not_found(message: str) -> RegistryError:
    return RegistryError(NOT_FOUND, message)


def _conflict(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(CONFLICT, message, detail=detail)


def robot_state(info: RobotInfo, now: dt.datetime) -> str:
    if info.revoked_at is not None:
        return "revoked"
    if info.expires_at is not None and info.expires_at <= now:
        return "expired"
    return "active"


class AccountAdmin:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        audit: AuditService,
        configured_public: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.audit = audit
        # Patterns from the settings: shown, but changed only in the configuration.
        self.configured_public = tuple(configured_public)

    @contextmanager
    def _change(self) -> Iterator[Session]:
        """A write transaction; auth's refusals become 400 and lost races 409."""
        try:
            with self.db.write() as session:
                yield session
        except IntegrityError as exc:
            raise _conflict("conflicts with a concurrent change; retry") from exc
        except AccountError as exc:
            raise RegistryError(REQUEST_INVALID, str(exc)) from exc
        except ValueError as exc:
            raise RegistryError(REQUEST_INVALID, str(exc)) from exc

    def _read(self, query: Callable[[Session], T]) -> T:
        with self.db.read() as session:
            return query(session)

    # -- users -------------------------------------------------------------------------------
    @staticmethod
    def _user(session: Session, username: str) -> User:
        user = accounts.get_user(session, username)
        if user is None:
            raise _not_found(f"no such user {username!r}")
        return user

    @staticmethod
    def _user_view(session: Session, user: User) -> UserView:
        robot_names = session.scalars(
            select(RobotToken.name).where(RobotToken.owner_id == user.id).order_by(RobotToken.name)
        )
        return UserView(
            username=user.username,
            admin=user.is_admin,
            disabled=user.disabled,
            created_at=user.created_at,
            groups=tuple(sorted(m.group.name for m in user.memberships)),
            robots=tuple(f"{user.username}+{n}" for n in robot_names),
        )

    def user_list(self) -> list[UserView]:
        def query(session: Session) -> list[UserView]:
            found = session.scalars(select(User).order_by(User.username))
            return [self._user_view(session, u) for u in found]

        return self._read(query)

    def user(self, username: str) -> UserView:
        return self._read(lambda s: self._user_view(s, self._user(s, username)))

    def create_user(self, actor: str, username: str, password: str, admin: bool) -> UserView:
        with self._change() as session:
            if accounts.get_user(session, username) is not None:
                raise _conflict(f"user {username!r} already exists")
            user = accounts.add_user(session, self.passwords, username, password, admin=admin)
            self.audit.add(session, actor, "user.create", username, {"admin": admin})
            return self._user_view(session, user)

    def update_user(
        self,
        actor: str,
        username: str,
        *,
        password: str | None,
        admin: bool | None,
        disabled: bool | None,
    ) -> UserView:
        with self._change() as session:
            user = self._user(session, username)
            losing_admin = (
                user.is_admin and not user.disabled and (admin is False or bool(disabled))
            )
            if losing_admin:
                self._keep_an_admin(session, username)
            changed: dict[str, Any] = {}
            if password is not None:
                accounts.set_password(session, self.passwords, username, password)
                changed["password_reset"] = True
            if admin is not None and admin != user.is_admin:
                accounts.set_admin(session, username, admin)
                changed["admin"] = admin
            if disabled is not None and disabled != user.disabled:
                accounts.set_disabled(session, username, disabled)
                changed["disabled"] = disabled
            if changed:
                self.audit.add(session, actor, "user.update", username, changed)
            return self._user_view(session, user)

    def delete_user(self, actor: str, username: str) -> None:
        with self._change() as session:
            user = self._user(session, username)
            if user.is_admin and not user.disabled:
                self._keep_an_admin(session, username)
            robot_count = session.scalar(
                select(func.count()).select_from(RobotToken).where(RobotToken.owner_id == user.id)
            )
            accounts.remove_user(session, username)
            self.audit.add(session, actor, "user.delete", username, {"robots": robot_count})

    @staticmethod
    def _keep_an_admin(session: Session, username: str) -> None:
        """Refuse to remove, demote or disable the last enabled admin account."""
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_admin, User.disabled.is_(False), User.username != username)
        )
        if not others:
            raise _conflict(f"{username!r} is the last enabled admin account")

    # -- groups ------------------------------------------------------------------------------
    @staticmethod
    def _group(session: Session, name: str) -> Group:
        group = accounts.get_group(session, name)
        if group is None:
            raise _not_found(f"no such group {name!r}")
        return group

    @staticmethod
    def _group_view(group: Group) -> GroupView:
        return GroupView(group.name, tuple(sorted(m.user.username for m in group.members)))

    def group_list(self) -> list[GroupView]:
        return self._read(
            lambda s: [self._group_view(g) for g in s.scalars(select(Group).order_by(Group.name))]
        )

    def group(self, name: str) -> GroupView:
        return self._read(lambda s: self._group_view(self._group(s, name)))

    def create_group(self, actor: str, name: str) -> GroupView:
        with self._change() as session:
            if accounts.get_group(session, name) is not None:
                raise _conflict(f"group {name!r} already exists")
            group = accounts.create_group(session, name)
            self.audit.add(session, actor, "group.create", name)
            return GroupView(group.name, ())

    def delete_group(self, actor: str, name: str) -> None:
        with self._change() as session:
            members = len(self._group(session, name).members)
            accounts.remove_group(session, name)
            self.audit.add(session, actor, "group.delete", name, {"members": members})

    def add_member(self, actor: str, name: str, username: str) -> GroupView:
        with self._change() as session:
            group = self._group(session, name)
            user = self._user(session, username)
            if session.get(GroupMember, (group.id, user.id)) is None:
                accounts.add_member(session, name, username)
                self.audit.add(session, actor, "group.member.add", name, {"user": username})
            session.refresh(group)
            return self._group_view(group)

    def remove_member(self, actor: str, name: str, username: str) -> GroupView:
        with self._change() as session:
            group = self._group(session, name)
            user = self._user(session, username)
            if session.get(GroupMember, (group.id, user.id)) is None:
                raise _not_found(f"{username!r} is not a member of group {name!r}")
            accounts.remove_member(session, name, username)
            self.audit.add(session, actor, "group.member.remove", name, {"user": username})
            session.refresh(group)
            return self._group_view(group)

    # -- permission rules --------------------------------------------------------------------
    def rule_list(
        self, subject_type: str | None = None, subject: str | None = None
    ) -> list[RuleInfo]:
        found = self._read(accounts.list_rules)
        return [
            r
            for r in found
            if (subject_type is None or r.subject_type == subject_type)
            and (subject is None or r.subject == subject)
        ]

    def _subject_id(self, session: Session, subject_type: SubjectType, subject: str) -> int:
        if subject_type == "user":
            return self._user(session, subject).id
        if subject_type == "group":
            return self._group(session, subject).id
        return self._robot(session, subject).id

    def create_rule(
        self,
        actor: str,
        subject_type: SubjectType,
        subject: str,
        repository_pattern: str,
        actions: Sequence[str],
    ) -> RuleInfo:
        with self._change() as session:
            validate_pattern(repository_pattern)
            wanted = parse_actions(list(actions))
            subject_id = self._subject_id(session, subject_type, subject)
            existing = session.scalar(
                select(PermissionRule.id).where(
                    PermissionRule.subject_type == subject_type,
                    PermissionRule.subject_id == subject_id,
                    PermissionRule.repository_pattern == repository_pattern,
                )
            )
            if existing is not None:
                raise _conflict(
                    f"rule {existing} already covers {subject_type} {subject!r} on"
                    f" {repository_pattern!r}; delete it first to change its actions",
                    {"id": existing},
                )
            rule = accounts.grant(session, subject_type, subject, repository_pattern, list(wanted))
            info = RuleInfo(rule.id, subject_type, subject, repository_pattern, wanted)
            self.audit.add(session, actor, "permission.create", _rule_target(info),
                           {"id": rule.id, "actions": sorted(wanted)})  # fmt: skip
            return info

    def delete_rule(self, actor: str, rule_id: int) -> None:
        with self._change() as session:
            found = [r for r in accounts.list_rules(session) if r.id == rule_id]
            if not found:
                raise _not_found(f"no such permission rule {rule_id}")
            accounts.revoke_rule(session, rule_id)
            self.audit.add(session, actor, "permission.delete", _rule_target(found[0]),
                           {"id": rule_id, "actions": sorted(found[0].actions)})  # fmt: skip

    # -- robots ------------------------------------------------------------------------------
    @staticmethod
    def _robot(session: Session, login: str) -> RobotToken:
        owner, _, name = login.partition("+")
        robot = session.scalar(
            select(RobotToken).join(User).where(User.username == owner, RobotToken.name == name)
        )
        if robot is None:
            raise _not_found(f"no such robot {login!r} (expected owner+name)")
        return robot

    def robot_list(self, owner: str | None = None) -> list[RobotInfo]:
        return self._read(lambda s: robots.list_robots(s, owner))

    def robot(self, login: str) -> RobotInfo:
        def query(session: Session) -> RobotInfo:
            self._robot(session, login)
            return next(r for r in robots.list_robots(session) if r.login == login)

        return self._read(query)

    def create_robot(
        self,
        actor: str,
        owner: str,
        name: str,
        scopes: Sequence[tuple[str, Sequence[str]]],
        *,
        admin: bool,
        expires_at: dt.datetime | None,
    ) -> tuple[RobotInfo, str]:
        with self._change() as session:
            user = self._user(session, owner)
            login = f"{owner}+{name}"
            taken = session.scalar(
                select(RobotToken.id).where(RobotToken.owner_id == user.id, RobotToken.name == name)
            )
            if taken is not None:
                raise _conflict(f"robot {login} already exists")
            if admin and not user.is_admin:
                raise _conflict(f"only an admin's robot can hold the admin scope; {owner!r} is not")
            info, secret = robots.create_robot(
                session,
                owner,
                name,
                [(pattern, list(actions)) for pattern, actions in scopes],
                expires_at=expires_at,
                admin=admin,
            )
            details = {
                "admin": admin,
                "scopes": [f"{p}:{format_actions(a)}" for p, a in info.scopes],
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
            self.audit.add(session, actor, "robot.create", login, details)
            return info, secret

    def revoke_robot(self, actor: str, login: str) -> RobotInfo:
        with self._change() as session:
            robot = self._robot(session, login)
            if robot.revoked_at is None:
                robots.revoke_robot(session, login)
                self.audit.add(session, actor, "robot.revoke", login)
        return self.robot(login)

    def delete_robot(self, actor: str, login: str) -> None:
        with self._change() as session:
            self._robot(session, login)
            robots.remove_robot(session, login)
            self.audit.add(session, actor, "robot.delete", login)

    # -- public pull patterns -----------------------------------------------------------------
    def public_patterns(self) -> list[PublicPattern]:
        query = select(PublicRepository).order_by(PublicRepository.pattern)
        return self._read(lambda s: [PublicPattern(p.id, p.pattern) for p in s.scalars(query)])

    def add_public_pattern(self, actor: str, pattern: str) -> PublicPattern:
        with self._change() as session:
            validate_pattern(pattern)
            existing = session.scalar(
                select(PublicRepository.id).where(PublicRepository.pattern == pattern)
            )
            if existing is not None:
                raise _conflict(f"{pattern!r} is already public", {"id": existing})
            accounts.add_public_pattern(session, pattern)
            stored = session.scalar(
                select(PublicRepository).where(PublicRepository.pattern == pattern)
            )
            assert stored is not None
            self.audit.add(session, actor, "public.add", pattern, {"id": stored.id})
            return PublicPattern(stored.id, stored.pattern)

    def remove_public_pattern(self, actor: str, pattern_id: int) -> None:
        with self._change() as session:
            stored = session.get(PublicRepository, pattern_id)
            if stored is None:
                raise _not_found(f"no such public pattern {pattern_id}")
            accounts.remove_public_pattern(session, stored.pattern)
            self.audit.add(session, actor, "public.remove", stored.pattern, {"id": pattern_id})


def _rule_target(rule: RuleInfo) -> str:
    return f"{rule.subject_type}:{rule.subject} {rule.repository_pattern}"
