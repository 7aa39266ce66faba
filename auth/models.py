"""Auth tables on their own metadata (`AuthBase.metadata`), portable to SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; SQLite drops the zone, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuthBase(DeclarativeBase):
    pass


class User(AuthBase):
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[GroupMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Group(AuthBase):
    __tablename__ = "auth_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )


class GroupMember(AuthBase):
    __tablename__ = "auth_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("auth_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("auth_users.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    group: Mapped[Group] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class RobotToken(AuthBase):
    """A named, scoped access token owned by a user; only the secret's SHA-256 is kept."""

    __tablename__ = "auth_robot_tokens"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The admin scope: the robot may use the admin API (while its owner is an admin).
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    owner: Mapped[User] = relationship()
    scopes: Mapped[list[RobotScope]] = relationship(
        back_populates="token", cascade="all, delete-orphan", passive_deletes=True
    )


class RobotScope(AuthBase):
    __tablename__ = "auth_robot_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(
        ForeignKey("auth_robot_tokens.id", ondelete="CASCADE"), index=True
    )
    repository_pattern: Mapped[str] = mapped_column(String(255))
    actions: Mapped[str] = mapped_column(String(64))  # comma-separated subset of pull,push,delete

    token: Mapped[RobotToken] = relationship(back_populates="scopes")


class PermissionRule(AuthBase):
    """Grants `actions` on repositories matching `repository_pattern` to a subject.

    The subject is polymorphic (user | group | robot), so there is no foreign key;
    the account functions delete a subject's rules together with the subject.
    """

    __tablename__ = "auth_permission_rules"
    __table_args__ = (UniqueConstraint("subject_type", "subject_id", "repository_pattern"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(Integer, index=True)
    repository_pattern: Mapped[str] = mapped_column(String(255))
    actions: Mapped[str] = mapped_column(String(64))


class PublicRepository(AuthBase):
    """Repository patterns anyone, anonymous included, may pull."""

    __tablename__ = "auth_public_repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pattern: Mapped[str] = mapped_column(String(255), unique=True)


class RefreshToken(AuthBase):
    """Long-lived OAuth2 refresh token (docker's identity token); only a digest is kept."""

    __tablename__ = "auth_refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("auth_users.id", ondelete="CASCADE"), index=True
    )
    robot_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_robot_tokens.id", ondelete="CASCADE"), nullable=True
    )
    service: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LoginFailure(AuthBase):
    """Failed-login counter per (username, client IP), shared by all replicas."""

    __tablename__ = "auth_login_failures"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    client_ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
