"""Who may do what: granted access = requested AND allowed (never an error)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from auth.models import GroupMember, PermissionRule, PublicRepository, RobotScope, User
from auth.patterns import matches, parse_actions
from auth.scopes import (
    CATALOG,
    PULL,
    REGISTRY,
    REPOSITORY,
    REPOSITORY_ACTIONS,
    Access,
    is_repository_name,
    merge,
)
from auth.settings import AuthSettings

Rules = list[tuple[str, frozenset[str]]]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; `username == ""` is the anonymous caller."""

    username: str
    user_id: int | None = None
    is_admin: bool = False
    robot_id: int | None = None
    robot_name: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    @property
    def subject(self) -> str:
        """The token `sub`: the username, or `owner+robot` for a robot token."""
        if self.robot_name is not None:
            return f"{self.username}+{self.robot_name}"
        return self.username


ANONYMOUS = Principal("")


def _allowed(rules: Rules, name: str) -> frozenset[str]:
    out: set[str] = set()
    for pattern, actions in rules:
        if matches(pattern, name):
            out |= actions
    return frozenset(out)


class Policy:
    def __init__(self, settings: AuthSettings) -> None:
        self._public = tuple(settings.public_repositories)
        self._personal = settings.personal_namespaces

    def _public_rules(self, session: Session) -> Rules:
        patterns = [*self._public, *session.scalars(select(PublicRepository.pattern))]
        return [(p, frozenset({PULL})) for p in patterns]

    def _user_rules(self, session: Session, principal: Principal) -> Rules:
        """Rules of the user and its groups (the owner's rules, for a robot)."""
        assert principal.user_id is not None
        group_ids = select(GroupMember.group_id).where(GroupMember.user_id == principal.user_id)
        query = select(PermissionRule).where(
            or_(
                (PermissionRule.subject_type == "user")
                & (PermissionRule.subject_id == principal.user_id),
                (PermissionRule.subject_type == "group") & PermissionRule.subject_id.in_(group_ids),
            )
        )
        rules = [(r.repository_pattern, parse_actions(r.actions)) for r in session.scalars(query)]
        if principal.is_admin:
            rules.append(("*", REPOSITORY_ACTIONS))
        if self._personal:
            rules.append((f"{principal.username}/*", REPOSITORY_ACTIONS))
        return rules

    def _robot_rules(self, session: Session, robot_id: int) -> tuple[Rules, Rules]:
        """(the token's own scope, extra rules granted to the robot itself)."""
        scope = [
            (s.repository_pattern, parse_actions(s.actions))
            for s in session.scalars(select(RobotScope).where(RobotScope.token_id == robot_id))
        ]
        query = select(PermissionRule).where(
            PermissionRule.subject_type == "robot", PermissionRule.subject_id == robot_id
        )
        extra = [(r.repository_pattern, parse_actions(r.actions)) for r in session.scalars(query)]
        return scope, extra

    def grant(
        self, session: Session, principal: Principal, requested: Iterable[Access]
    ) -> list[Access]:
        """Intersect each requested entry with what the principal may do; drop empties.

        A robot gets its token scope AND (its owner's rights OR rules granted to the robot).
        Signed-in users (not robots) get `registry:catalog:*`, and the catalog lists
        for each only what `pullable` allows; public patterns give everyone pull.
        """
        public = self._public_rules(session)
        user_rules: Rules = []
        robot_scope: Rules | None = None
        robot_extra: Rules = []
        if not principal.anonymous:
            user_rules = self._user_rules(session, principal)
            if principal.robot_id is not None:
                robot_scope, robot_extra = self._robot_rules(session, principal.robot_id)
        granted: list[Access] = []
        # The resource class is deprecated and ignored (scope.md): `repository(plugin):x`
        # is `repository:x`, and granted scopes carry no class.
        for want in merge(Access(a.type, a.name, a.actions) for a in requested):
            if want.type == REPOSITORY:
                if not is_repository_name(want.name):
                    continue
                allowed = _allowed(user_rules, want.name) | _allowed(robot_extra, want.name)
                if robot_scope is not None:
                    allowed &= _allowed(robot_scope, want.name)
                allowed |= _allowed(public, want.name)
                actions = want.actions & allowed
            elif (want.type, want.name) == (REGISTRY, CATALOG):
                # Signed-in users may list; the registry shows each only what it may pull.
                is_user = not principal.anonymous and robot_scope is None
                actions = want.actions & {"*"} if is_user else frozenset()
            else:
                actions = frozenset()
            if actions:
                granted.append(Access(want.type, want.name, frozenset(actions)))
        return granted

    def allowed_actions(self, session: Session, principal: Principal, name: str) -> frozenset[str]:
        """Convenience for callers (e.g. the admin API) that ask about one repository."""
        result = self.grant(session, principal, [Access(REPOSITORY, name, REPOSITORY_ACTIONS)])
        return result[0].actions if result else frozenset()

    def pullable(self, session: Session, username: str, names: Sequence[str]) -> list[str]:
        """The repositories among ``names`` the user may pull (all of them for admins)."""
        principal = principal_for_user(session, username)
        if principal is None:
            return []
        if principal.is_admin:
            return list(names)
        wanted = [Access(REPOSITORY, n, frozenset({"pull"})) for n in names]
        allowed = {a.name for a in self.grant(session, principal, wanted)}
        return [n for n in names if n in allowed]


def principal_for_user(session: Session, username: str) -> Principal | None:
    """The principal of an enabled user account, or None."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled:
        return None
    return Principal(user.username, user.id, user.is_admin)
