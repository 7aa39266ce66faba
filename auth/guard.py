"""Per-request authorization for registry endpoints: verify the bearer token and
compare its access with what the route needs (see `scopes.required_access`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from auth.challenge import INSUFFICIENT_SCOPE, INVALID_TOKEN, bearer_challenge
from auth.scopes import Access
from auth.settings import AuthSettings
from auth.tokens import InvalidToken, TokenClaims, TokenVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """`allowed` or a 401 to send with `www_authenticate` (registry code UNAUTHORIZED)."""

    allowed: bool
    claims: TokenClaims | None = None
    www_authenticate: str | None = None
    error: str | None = None  # None, "invalid_token" or "insufficient_scope"

    @property
    def subject(self) -> str | None:
        """Who is calling (for upload-session binding and audit); None if unknown."""
        return self.claims.subject if self.claims else None


class RequestGuard:
    def __init__(self, settings: AuthSettings, verifier: TokenVerifier | None) -> None:
        if settings.mode != "none" and verifier is None:
            raise ValueError("a token verifier is required unless auth.mode is 'none'")
        self._settings = settings
        self._verifier = verifier

    def challenge(self, required: Sequence[Access] = (), error: str | None = None) -> str:
        return bearer_challenge(self._settings.realm, self._settings.service, required, error)

    def check(self, authorization: str | None, required: Sequence[Access]) -> Decision:
        if self._settings.mode == "none" or self._verifier is None:
            return Decision(True)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Decision(False, www_authenticate=self.challenge(required))
        try:
            claims = self._verifier.verify(token)
        except InvalidToken as exc:
            log.info("bearer token refused: %s", exc)
            return Decision(False, None, self.challenge(required, INVALID_TOKEN), INVALID_TOKEN)
        missing = claims.missing(required)
        if missing:
            return Decision(
                False, claims, self.challenge(required, INSUFFICIENT_SCOPE), INSUFFICIENT_SCOPE
            )
        return Decision(True, claims)
