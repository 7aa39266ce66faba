"""Bearer-token access control (Docker token auth) behind the AccessController seam."""

from __future__ import annotations

from anyio import to_thread
from starlette.requests import Request

from auth.guard import RequestGuard
from auth.policy import Policy
from auth.scopes import Access
from registry.db.engine import Database
from registry.domain.errors import UNAUTHORIZED, RegistryError
from registry.http.access import AccessRequest, Principal


def _to_access(needed: list[AccessRequest]) -> list[Access]:
    return [Access(n.type, n.name, frozenset(n.actions)) for n in needed]


class TokenAccess:
    """Verifies the request's bearer token against what the route needs."""

    def __init__(
        self, guard: RequestGuard, policy: Policy | None = None, db: Database | None = None
    ) -> None:
        self.guard = guard
        self.policy = policy
        self.db = db

    async def authorize(self, request: Request, needed: list[AccessRequest]) -> Principal:
        # Signature checks are CPU-bound and short: no thread hop.
        decision = self.guard.check(request.headers.get("authorization"), _to_access(needed))
        if not decision.allowed:
            raise RegistryError(
                UNAUTHORIZED,
                "authentication required"
                if decision.error is None
                else f"access denied: {decision.error.replace('_', ' ')}",
                detail=[{"Type": n.type, "Name": n.name, "Action": a}
                        for n in needed for a in n.actions] or None,
                headers={"WWW-Authenticate": decision.www_authenticate or ""},
            )  # fmt: skip
        claims = decision.claims
        granted: frozenset[tuple[str, str, str]] = frozenset()
        if claims is not None:
            granted = frozenset((a.type, a.name, act) for a in claims.access for act in a.actions)
        return Principal(subject=decision.subject, granted=granted)

    async def visible_repositories(self, principal: Principal, names: list[str]) -> list[str]:
        # Tokens carry no per-repository pull for the whole registry: ask the policy.
        if not principal.subject or self.policy is None or self.db is None:
            return []
        policy, db, subject = self.policy, self.db, principal.subject

        def pullable() -> list[str]:
            with db.read() as session:
                return policy.pullable(session, subject, names)

        return await to_thread.run_sync(pullable)
