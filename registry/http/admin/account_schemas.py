"""Request and response models of ``/admin/v1/accounts``: strict, like the rest of the API.

Passwords and robot secrets are write-only: no response model has a field for them, except
the one answer that creates a robot and shows its secret once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from registry.http.admin.schemas import PRINTABLE, Strict

# The grammars of auth.accounts and auth.robots, so the document says what is accepted.
USERNAME_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ROBOT_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
REPOSITORY_PATTERN = r"^[a-z0-9._/*-]{1,255}$"
ROBOT_LOGIN_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\+[a-z0-9][a-z0-9._-]{0,63}$"

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN)]
GroupName = Annotated[str, Field(min_length=1, max_length=64, pattern=GROUP_PATTERN)]
Password = Annotated[
    str,
    Field(
        min_length=8,
        max_length=1024,
        description="At least 8 characters; never returned.",
    ),
]
RepositoryPattern = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=REPOSITORY_PATTERN,
        description="`*` matches any characters, `/` included: `team/*`, `*`.",
    ),
]
Action = Literal["pull", "push", "delete"]
Actions = Annotated[list[Action], Field(min_length=1, max_length=3)]


# -- users ---------------------------------------------------------------------------


class UserIn(Strict):
    username: Username
    password: Password
    admin: bool = False


class UserPatch(Strict):
    """Only the fields given change; a new password also ends the user's refresh tokens."""

    password: Password | None = None
    admin: bool | None = None
    disabled: bool | None = Field(None, description="A disabled user (and its robots) is out.")

    @model_validator(mode="after")
    def _something(self) -> UserPatch:
        if self.password is None and self.admin is None and self.disabled is None:
            raise ValueError("give at least one of password, admin, disabled")
        return self


class UserOut(BaseModel):
    username: str
    admin: bool
    disabled: bool
    created_at: dt.datetime
    groups: list[str]
    robots: list[str] = Field(description="Logins (`owner+name`) of the user's robots.")


class UserList(BaseModel):
    items: list[UserOut]


# -- groups --------------------------------------------------------------------------


class GroupIn(Strict):
    name: GroupName


class GroupOut(BaseModel):
    name: str
    members: list[str]


class GroupList(BaseModel):
    items: list[GroupOut]


# -- permission rules ----------------------------------------------------------------


class RuleQuery(Strict):
    subject_type: Literal["user", "group", "robot"] | None = None
    subject: str | None = Field(None, max_length=200, pattern=PRINTABLE)


class RuleIn(Strict):
    subject_type: Literal["user", "group", "robot"]
    subject: str = Field(
        min_length=1,
        max_length=200,
        pattern=PRINTABLE,
        description="A username, a group name or a robot login `owner+name`.",
    )
    repository_pattern: RepositoryPattern
    actions: Actions


class RuleOut(BaseModel):
    id: int
    subject_type: str
    subject: str
    repository_pattern: str
    actions: list[str]


class RuleList(BaseModel):
    items: list[RuleOut]


# -- robots --------------------------------------------------------------------------


class RobotQuery(Strict):
    owner: str | None = Field(None, max_length=64, pattern=PRINTABLE)


class RobotScopeIn(Strict):
    repository_pattern: RepositoryPattern
    actions: Actions


class RobotIn(Strict):
    owner: Username = Field(description="The robot never gets more than its owner has.")
    name: str = Field(min_length=1, max_length=64, pattern=ROBOT_NAME_PATTERN)
    scopes: list[RobotScopeIn] = Field(default_factory=list, max_length=100)
    admin: bool = Field(
        False, description="The admin scope: use this API (the owner must be an admin)."
    )
    expires_in_days: int | None = Field(None, ge=1, le=36500)

    @model_validator(mode="after")
    def _has_a_scope(self) -> RobotIn:
        if not self.scopes and not self.admin:
            raise ValueError("a robot needs at least one repository scope or admin=true")
        return self


class RobotScopeOut(BaseModel):
    repository_pattern: str
    actions: list[str]


class RobotOut(BaseModel):
    login: str = Field(description="The `docker login` username: `owner+name`.")
    owner: str
    name: str
    admin: bool
    scopes: list[RobotScopeOut]
    state: Literal["active", "revoked", "expired"]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class RobotCreatedOut(RobotOut):
    secret: str = Field(description="Shown this once: only its SHA-256 is stored.")


class RobotList(BaseModel):
    items: list[RobotOut]


# -- public pull patterns ------------------------------------------------------------


class PublicIn(Strict):
    pattern: RepositoryPattern


class PublicOut(BaseModel):
    id: int
    pattern: str


class PublicList(BaseModel):
    items: list[PublicOut]
    configured: list[str] = Field(
        description="Patterns from the settings (`auth.public_repositories`): read-only here."
    )
