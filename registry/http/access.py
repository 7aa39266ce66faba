"""Who may do what: the seam where token authentication plugs in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One scope a request needs, e.g. repository ``team/app`` with ``pull``."""

    type: str
    name: str
    actions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; ``subject`` None means anonymous."""

    subject: str | None
    # Scopes granted to the caller, for checks beyond the request's own scope.
    granted: frozenset[tuple[str, str, str]] = frozenset()
    unrestricted: bool = False

    def may(self, type_: str, name: str, action: str) -> bool:
        if self.unrestricted or (type_, name, action) in self.granted:
            return True
        # `*` in a token's actions covers every action on that resource.
        return (type_, name, "*") in self.granted


class AccessController(Protocol):
    async def authorize(
        self, request: Request, needed: list[AccessRequest], wanted: Sequence[AccessRequest] = ()
    ) -> Principal:
        """Return the caller if every needed scope is granted, else raise 401/403.

        ``wanted`` scopes are used when granted but not required (a mount's source): a
        401 challenge names them too, so the client's next token can include them.
        """
        ...

    async def visible_repositories(self, principal: Principal, names: list[str]) -> list[str]:
        """The repositories among ``names`` the caller may pull (for the catalog)."""
        ...


class OpenAccess:
    """No authentication: everyone may do everything (the embedded default)."""

    _anyone = Principal(subject=None, unrestricted=True)

    async def authorize(
        self, request: Request, needed: list[AccessRequest], wanted: Sequence[AccessRequest] = ()
    ) -> Principal:
        return self._anyone

    async def visible_repositories(self, principal: Principal, names: list[str]) -> list[str]:
        return names
