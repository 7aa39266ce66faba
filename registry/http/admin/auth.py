"""Who may use the admin API.

Registry pull/push tokens are never accepted here. With token auth on, an admin account
signs in with Basic credentials, and a robot holding the admin scope (whose owner is an
admin) with Basic ``owner+name``:secret or ``Authorization: Bearer <secret>``. Missing or
bad credentials are 401; a valid non-admin user or a robot without the admin scope is 403.
A configured ``admin_token`` (``LADING_ADMIN_TOKEN``) is accepted as ``Authorization:
Bearer`` in every mode; with auth off and no admin token the open registry lets everyone in.
A wrong bearer value is a guess at the admin token: it counts in the login throttle of the
client address, so guessing ends in 429 with ``Retry-After`` as for passwords.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass
from typing import Protocol

from anyio import to_thread
from sqlalchemy.orm import Session
from starlette.requests import Request

from auth.authn import authenticate
from auth.factory import AuthComponents
from auth.models import utcnow
from auth.policy import Principal
from auth.robots import (
    find_by_secret,
    get_robot,
    looks_like_robot_secret,
    robot_is_admin,
    robot_usable,
)
from auth.throttle import ADMIN_TOKEN_LOGIN
from auth.tokens import InvalidToken
from registry.db.engine import Database
from registry.domain.errors import DENIED, TOOMANYREQUESTS, UNAUTHORIZED, RegistryError

log = logging.getLogger(__name__)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lading-admin"'}
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="lading-admin"'}


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """The caller of an admin request; ``subject`` is what the audit log records."""

    subject: str
    # "anonymous" (open registry), "token" (the configured admin token), "account"
    # or "robot" (``subject`` is then ``owner+name``).
    kind: str


class AdminAuthenticator(Protocol):
    async def authenticate(self, request: Request) -> AdminPrincipal:
        """Return an admin caller, else raise 401 (unauthenticated) or 403 (not an admin)."""
        ...


def unauthorized(message: str, challenge: dict[str, str] = _CHALLENGE) -> RegistryError:
    return RegistryError(UNAUTHORIZED, message, headers=dict(challenge))


def forbidden(message: str = "admin rights required") -> RegistryError:
    return RegistryError(DENIED, message)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class OpenAdminAccess:
    """Authentication is off: everyone administers the open registry."""

    async def authenticate(self, request: Request) -> AdminPrincipal:
        return AdminPrincipal(subject=f"anonymous@{_client(request)}", kind="anonymous")


def _locked_out(wait: int) -> RegistryError:
    return RegistryError(
        TOOMANYREQUESTS,
        f"too many failed attempts from this address: try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


class AdminTokenCheck:
    """The configured admin token, throttled like a password.

    Every bearer value that is not the token (nor another valid credential) is a guess
    and counts as a failed login of the client address under ``ADMIN_TOKEN_LOGIN``; the
    lock is checked before the comparison, so a locked address learns nothing more.
    """

    def __init__(self, token: str, db: Database, auth: AuthComponents) -> None:
        self._token = token.encode()
        self.db = db
        self.throttle = auth.throttle
        self.verifier = auth.verifier

    async def admits(self, value: str, client_ip: str) -> bool:
        """True for the admin token; 429 while the address is locked."""

        def admit(session: Session) -> bool:
            return self._admits(session, value, client_ip)

        return await to_thread.run_sync(self.db.commit_unlocked, admit)

    def _admits(self, session: Session, value: str, client_ip: str) -> bool:
        wait = self.throttle.retry_after(session, ADMIN_TOKEN_LOGIN, client_ip)
        if wait is not None:
            raise _locked_out(wait)
        # Constant-time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(value.encode(), self._token):
            return False
        self.throttle.reset(session, ADMIN_TOKEN_LOGIN, client_ip)
        return True

    async def refuse(self, value: str, client_ip: str) -> None:
        """Count ``value``, which matched nothing, as a failed attempt of ``client_ip``.

        Our own registry tokens are not counted: sending one here is a client's mistake
        that guesses nothing, and must not lock the address's logins out.
        """
        if not value or self._is_registry_token(value):
            return

        def count(session: Session) -> None:
            locked = self.throttle.record_failure(session, ADMIN_TOKEN_LOGIN, client_ip)
            log.info("admin API: wrong admin token from %s", client_ip)
            if locked is not None:
                log.warning("admin API: %s locked out for %d s", client_ip, locked)

        await to_thread.run_sync(self.db.commit_unlocked, count)

    def _is_registry_token(self, value: str) -> bool:
        if self.verifier is None or value.count(".") != 2:
            return False
        try:
            self.verifier.verify(value)
        except InvalidToken:
            return False
        return True


class StaticTokenAdminAccess:
    """Only ``Authorization: Bearer <admin_token>``; anything else is 401."""

    def __init__(self, check: AdminTokenCheck) -> None:
        self._check = check

    async def authenticate(self, request: Request) -> AdminPrincipal:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            raise unauthorized("admin credentials required")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the admin API takes a bearer admin token")
        client = _client(request)
        if await self._check.admits(value.strip(), client):
            return AdminPrincipal(subject=f"admin-token@{client}", kind="token")
        await self._check.refuse(value.strip(), client)
        raise unauthorized("invalid admin token")


class AccountAdminAccess:
    """Token auth on: an admin account by Basic credentials, or the admin token."""

    def __init__(self, db: Database, auth: AuthComponents, check: AdminTokenCheck | None) -> None:
        self.db = db
        self.auth = auth
        self._token_check = check

    async def authenticate(self, request: Request) -> AdminPrincipal:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            raise unauthorized("admin credentials required", _BASIC_CHALLENGE)
        if scheme.lower() == "bearer":
            return await self._bearer(value.strip(), _client(request))
        if scheme.lower() != "basic":
            raise unauthorized("unsupported authorization scheme", _BASIC_CHALLENGE)
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise unauthorized("malformed Basic credentials", _BASIC_CHALLENGE) from exc
        if not sep:
            raise unauthorized("malformed Basic credentials", _BASIC_CHALLENGE)
        # Password hashing is slow on purpose: keep it off the event loop.
        return await to_thread.run_sync(self._check, username, password, _client(request))

    async def _bearer(self, secret: str, client: str) -> AdminPrincipal:
        check = self._token_check
        if check is not None and await check.admits(secret, client):
            return AdminPrincipal(f"admin-token@{client}", "token")
        if looks_like_robot_secret(secret):
            try:
                return await to_thread.run_sync(self._robot_bearer, secret)
            except RegistryError as exc:
                if check is not None and exc.code == UNAUTHORIZED:
                    await check.refuse(secret, client)
                raise
        if check is not None:
            await check.refuse(secret, client)
        raise unauthorized(
            "registry tokens are not accepted here: sign in as an admin (Basic)"
            " or send an admin robot's secret",
            _BASIC_CHALLENGE,
        )

    def _check(self, username: str, password: str, client_ip: str) -> AdminPrincipal:
        # Not under the writer lock (as /token): argon2 there would let wrong passwords
        # stall every push.
        principal, robot_admin = self.db.commit_unlocked(
            lambda session: self._verify(session, username, password, client_ip)
        )
        # Raised after the commit: failed-login counters must be stored.
        if principal is None:
            raise unauthorized("invalid username or password", _BASIC_CHALLENGE)
        if principal.robot_id is not None:
            if not robot_admin:
                raise forbidden("this robot has no admin scope")
            return AdminPrincipal(principal.subject, "robot")
        if not principal.is_admin:
            raise forbidden("admin rights required")
        return AdminPrincipal(principal.username, "account")

    def _verify(
        self, session: Session, username: str, password: str, client_ip: str
    ) -> tuple[Principal | None, bool]:
        throttle = self.auth.throttle
        wait = throttle.retry_after(session, username, client_ip)
        if wait is not None:
            raise _locked_out(wait)
        principal = authenticate(session, self.auth.passwords, username, password)
        if principal is None:
            throttle.record_failure(session, username, client_ip)
        else:
            throttle.reset(session, username, client_ip)
        robot = get_robot(session, principal.robot_id) if principal and principal.robot_id else None
        return principal, robot is not None and robot_is_admin(robot)

    def _robot_bearer(self, secret: str) -> AdminPrincipal:
        """A robot's secret as a bearer token (256 random bits).

        Looked up in a read session: made-up secrets must not queue for, nor take turns
        at, SQLite's writer lock that pushes need. Only a valid admin robot writes.
        """
        now = utcnow()
        with self.db.read() as session:
            robot = find_by_secret(session, secret)
            if robot is None or not robot_usable(robot, now):
                raise unauthorized("invalid, revoked or expired robot secret", _BASIC_CHALLENGE)
            if not robot_is_admin(robot):
                raise forbidden("this robot has no admin scope")
            robot_id, login = robot.id, f"{robot.owner.username}+{robot.name}"
        with self.db.write() as session:
            used = get_robot(session, robot_id)
            if used is not None:
                used.last_used_at = now
        return AdminPrincipal(login, "robot")


class ClosedAdminAccess:
    """External token issuer and no admin token: nobody can be checked, so nobody is in."""

    async def authenticate(self, request: Request) -> AdminPrincipal:
        raise unauthorized("the admin API needs admin_token (LADING_ADMIN_TOKEN) in this mode")


def admin_authenticator(
    admin_token: str | None, auth_mode: str, db: Database, auth: AuthComponents
) -> AdminAuthenticator:
    check = AdminTokenCheck(admin_token, db, auth) if admin_token else None
    if auth_mode == "token":
        return AccountAdminAccess(db, auth, check)
    if check is not None:
        return StaticTokenAdminAccess(check)
    if auth_mode == "none":
        return OpenAdminAccess()
    return ClosedAdminAccess()
