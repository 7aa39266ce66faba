"""Who may use the admin API: the seam where token authentication plugs in.

The admin API never accepts registry pull/push tokens. Once accounts land, an
authenticator checks for an admin account (Basic or a session token) or a robot token
carrying the admin scope, and answers 401 (no or bad credentials) or 403 (a valid caller
without admin rights). Until then the open registry lets everyone in, and a configured
``admin_token`` (``LADING_ADMIN_TOKEN``) restricts the API to that bearer token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from registry.domain.errors import DENIED, UNAUTHORIZED, RegistryError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lading-admin"'}


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """The caller of an admin request; ``subject`` is what the audit log records."""

    subject: str
    # "anonymous" (open registry), "token" (the configured admin token), later
    # "account" or "robot".
    kind: str


class AdminAuthenticator(Protocol):
    async def authenticate(self, request: Request) -> AdminPrincipal:
        """Return an admin caller, else raise 401 (unauthenticated) or 403 (not an admin)."""
        ...


def unauthorized(message: str) -> RegistryError:
    return RegistryError(UNAUTHORIZED, message, headers=dict(_CHALLENGE))


def forbidden(message: str = "admin rights required") -> RegistryError:
    return RegistryError(DENIED, message)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class OpenAdminAccess:
    """Authentication is off: everyone administers the open registry."""

    async def authenticate(self, request: Request) -> AdminPrincipal:
        return AdminPrincipal(subject=f"anonymous@{_client(request)}", kind="anonymous")


class StaticTokenAdminAccess:
    """Only ``Authorization: Bearer <admin_token>``; anything else is 401."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def authenticate(self, request: Request) -> AdminPrincipal:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            raise unauthorized("admin credentials required")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the admin API takes a bearer admin token")
        # Constant-time: the comparison must not reveal how much of a guess was right.
        if not hmac.compare_digest(value.strip().encode(), self._token):
            raise unauthorized("invalid admin token")
        return AdminPrincipal(subject=f"admin-token@{_client(request)}", kind="token")


def admin_authenticator(admin_token: str | None) -> AdminAuthenticator:
    if admin_token:
        return StaticTokenAdminAccess(admin_token)
    return OpenAdminAccess()
