"""Bearer-token access control (Docker token auth) behind the AccessController seam."""

from __future__ import annotations

from collections.abc import Sequence

from anyio import to_thread
from starlette.requests import Request

from auth.challenge import INSUFFICIENT_SCOPE
from auth.guard import RequestGuard
from auth.policy import Policy, principal_for_user
from auth.scopes import Access, merge
from registry.db.engine import Database
from registry.domain.errors import DENIED, UNAUTHORIZED, RegistryError
from registry.http.access import AccessRequest, Principal


def _to_access(needed: Sequence[AccessRequest]) -> list[Access]:
    return [Access(n.type, n.name, frozenset(n.actions)) for n in needed]


class TokenAccess:
    """Verifies the request's bearer token against what the route needs."""

    def __init__(
        self, guard: RequestGuard, policy: Policy | None = None, db: Database | None = None
    ) -> None:
        """``policy`` and ``db``: Lading's own accounts (None under an external issuer)."""
        self.guard = guard
        self.policy = policy
        self.db = db

    async def authorize(
        self, request: Request, needed: list[AccessRequest], wanted: Sequence[AccessRequest] = ()
    ) -> Principal:
        # Signature checks are CPU-bound and short: no thread hop.
        decision = self.guard.check(request.headers.get("authorization"), _to_access(needed))
        if not decision.allowed:
            challenge = decision.www_authenticate or ""
            if wanted:
                # Ask for the optional scopes too, or the next token still could not use them.
                challenge = self.guard.challenge(
                    merge(_to_access([*needed, *wanted])), decision.error
                )
            if decision.error == INSUFFICIENT_SCOPE and await self._refused_by_policy(
                decision.subject, needed
            ):
                # A new token would not help: the account itself lacks the access.
                raise RegistryError(
                    DENIED,
                    detail=[{"Type": n.type, "Name": n.name, "Action": a}
                            for n in needed for a in n.actions],
                )  # fmt: skip
            raise RegistryError(
                UNAUTHORIZED,
                "authentication required"
                if decision.error is None
                else f"access denied: {decision.error.replace('_', ' ')}",
                detail=[{"Type": n.type, "Name": n.name, "Action": a}
                        for n in needed for a in n.actions] or None,
                headers={"WWW-Authenticate": challenge},
            )  # fmt: skip
        claims = decision.claims
        granted: frozenset[tuple[str, str, str]] = frozenset()
        if claims is not None:
            granted = frozenset((a.type, a.name, act) for a in claims.access for act in a.actions)
        return Principal(subject=decision.subject, granted=granted)

    async def _refused_by_policy(self, subject: str | None, needed: list[AccessRequest]) -> bool:
        """True when a signed-in user's account (not just this token) lacks ``needed``.

        Anonymous callers and robots keep the 401 challenge: logging in, or a
        token for the right scope, may still succeed.
        """
        if not subject or "+" in subject or self.policy is None or self.db is None:
            return False
        policy, db, wanted = self.policy, self.db, _to_access(needed)

        def refused() -> bool:
            with db.read() as session:
                principal = principal_for_user(session, subject)
                if principal is None:
                    return True
                granted = merge(policy.grant(session, principal, wanted))
                return any(
                    not any(
                        (g.type, g.name) == (w.type, w.name) and w.actions <= g.actions
                        for g in granted
                    )
                    for w in wanted
                )

        return await to_thread.run_sync(refused)

    async def visible_repositories(self, principal: Principal, names: list[str]) -> list[str]:
        if self.policy is None or self.db is None:
            # An external issuer's catalog grant is the whole catalog (as in distribution).
            return names
        # Tokens carry no per-repository pull for the whole registry: ask the policy.
        if not principal.subject:
            return []
        policy, db, subject = self.policy, self.db, principal.subject

        def pullable() -> list[str]:
            with db.read() as session:
                return policy.pullable(session, subject, names)

        return await to_thread.run_sync(pullable)
