"""Token endpoint logic (GET flow and OAuth2 POST flow), independent of any web framework.

Both handlers always return a `TokenResponse`, errors included, and only flush the
session: the caller commits it in every case, so failed-login counters are kept too.
Tokens, passwords and refresh secrets are never logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session

from auth.authn import authenticate
from auth.challenge import basic_challenge
from auth.models import utcnow
from auth.passwords import Passwords
from auth.policy import ANONYMOUS, Policy, Principal
from auth.refresh import issue_refresh_token, purge_refresh_tokens, redeem_refresh_token
from auth.scopes import Access, ScopeError, format_scopes, parse_scopes
from auth.settings import AuthSettings
from auth.throttle import LoginThrottle
from auth.tokens import TokenIssuer

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
# Expired and revoked refresh tokens are deleted this often, by the logins that add rows.
_REFRESH_PURGE_EVERY = timedelta(hours=1)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class TokenResponse:
    """Status, JSON body and extra headers for the HTTP layer to send as they are."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


class TokenError(Exception):
    status = 400
    error = "invalid_request"
    registry_code = "UNSUPPORTED"

    def __init__(self, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after

    def response(self, realm: str) -> TokenResponse:
        # Both shapes: OAuth2 clients read `error`, docker reads the `errors` list.
        body: dict[str, object] = {
            "error": self.error,
            "error_description": self.description,
            "errors": [{"code": self.registry_code, "message": self.description}],
        }
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = basic_challenge(realm)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return TokenResponse(self.status, body, headers)


class InvalidRequest(TokenError):
    pass


class InvalidScope(TokenError):
    error = "invalid_scope"


class UnsupportedGrantType(TokenError):
    error = "unsupported_grant_type"


class InvalidCredentials(TokenError):
    """Bad credentials or refresh token: 401, not RFC 6749's 400 for `invalid_grant`.

    Distribution's token server answers 401 too, and clients key on it: containers/image
    (podman, skopeo) reports only a 401 as "invalid username/password", and BuildKit's
    session auth and containerd before 2022 fall back from POST to GET on 401 but not on
    400, which would show a bare "400 Bad Request". Later containerd treats both alike;
    the body carries RFC 6749's `error` either way.
    """

    status = 401
    error = "invalid_grant"
    registry_code = "UNAUTHORIZED"


class TooManyAttempts(TokenError):
    status = 429
    error = "too_many_requests"
    registry_code = "TOOMANYREQUESTS"


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Decode an `application/x-www-form-urlencoded` body (charset parameter ignored)."""
    if len(body) > MAX_FORM_BYTES:
        raise ValueError("form too large")
    return parse_qsl(body.decode("utf-8", errors="strict"), keep_blank_values=True)


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """`Basic base64(user:pass)` → (user, pass); None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCredentials("malformed Basic credentials") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidCredentials("malformed Basic credentials")
    return username, password


def _first(params: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class TokenService:
    def __init__(
        self,
        settings: AuthSettings,
        issuer: TokenIssuer,
        passwords: Passwords,
        policy: Policy,
        throttle: LoginThrottle,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._issuer = issuer
        self._passwords = passwords
        self._policy = policy
        self._throttle = throttle
        self._clock = clock
        self._refresh_purge_due: datetime | None = None

    # -- entry points -----------------------------------------------------------------

    def handle_get(
        self,
        session: Session,
        params: Sequence[tuple[str, str]],
        authorization: str | None,
        client_ip: str,
    ) -> TokenResponse:
        """GET /token: `params` are the query items, repeated `scope` allowed."""
        try:
            self._check_service(_first(params, "service"))
            requested = self._scopes([v for k, v in params if k == "scope"])
            credentials = parse_basic(authorization)
            principal = ANONYMOUS
            if credentials is not None:
                principal = self._login(session, *credentials, client_ip)
            refresh = None
            offline = (_first(params, "offline_token") or "").lower() == "true"
            if offline and not principal.anonymous:
                client_id = _first(params, "client_id") or ""
                refresh = self._new_refresh(session, principal, client_id)
            return self._grant(session, principal, requested, refresh, oauth=False)
        except TokenError as exc:
            return exc.response(self._settings.realm)

    def handle_post(
        self, session: Session, form: Sequence[tuple[str, str]], client_ip: str
    ) -> TokenResponse:
        """POST /token (OAuth2 form, see `parse_form`); grant types password, refresh_token."""
        try:
            self._check_service(_first(form, "service"))
            requested = self._scopes([v for k, v in form if k == "scope"])
            grant_type = _first(form, "grant_type")
            client_id = _first(form, "client_id") or ""
            refresh: str | None = None
            if grant_type == "password":
                username, password = _first(form, "username"), _first(form, "password")
                if not username or password is None:
                    raise InvalidRequest("username and password are required")
                principal = self._login(session, username, password, client_ip)
                if _first(form, "access_type") == "offline":
                    refresh = self._new_refresh(session, principal, client_id)
            elif grant_type == "refresh_token":
                refresh = _first(form, "refresh_token")
                if not refresh:
                    raise InvalidRequest("refresh_token is required")
                found = redeem_refresh_token(
                    session, refresh, self._settings.service, self._clock()
                )
                if found is None:
                    raise InvalidCredentials("invalid or expired refresh token")
                principal = found
            elif grant_type is None:
                raise InvalidRequest("grant_type is required")
            else:
                raise UnsupportedGrantType("unsupported grant_type")
            return self._grant(session, principal, requested, refresh, oauth=True)
        except TokenError as exc:
            return exc.response(self._settings.realm)

    # -- steps ------------------------------------------------------------------------

    def _check_service(self, service: str | None) -> None:
        # Tokens are only ever minted for our own service (audience).
        if service is not None and service != self._settings.service:
            raise InvalidRequest("unknown service")

    @staticmethod
    def _scopes(values: list[str]) -> list[Access]:
        try:
            return parse_scopes(values)
        except ScopeError as exc:
            raise InvalidScope(str(exc)) from exc

    def _login(self, session: Session, username: str, password: str, ip: str) -> Principal:
        now = self._clock()
        wait = self._throttle.retry_after(session, username, ip, now)
        if wait is not None:
            raise TooManyAttempts("too many failed logins, try again later", wait)
        principal = authenticate(session, self._passwords, username, password, now)
        if principal is None:
            self._throttle.record_failure(session, username, ip, now)
            log.info("token request: failed login for %r from %s", username[:64], ip)
            raise InvalidCredentials("incorrect username or password")
        self._throttle.reset(session, username, ip)
        return principal

    def _new_refresh(self, session: Session, principal: Principal, client_id: str) -> str:
        ttl, now = timedelta(seconds=self._settings.refresh_ttl_seconds), self._clock()
        # Every `docker login` adds a row: without this the table only ever grows.
        if self._refresh_purge_due is None or now >= self._refresh_purge_due:
            self._refresh_purge_due = now + _REFRESH_PURGE_EVERY
            purge_refresh_tokens(session, now)
        return issue_refresh_token(session, principal, self._settings.service, client_id, ttl, now)

    def _grant(
        self,
        session: Session,
        principal: Principal,
        requested: list[Access],
        refresh: str | None,
        *,
        oauth: bool,
    ) -> TokenResponse:
        granted = self._policy.grant(session, principal, requested)
        issued = self._issuer.issue(principal.subject, granted, self._clock().timestamp())
        log.info("token issued: sub=%r access=%s", principal.subject, format_scopes(granted) or "-")
        body: dict[str, object] = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": _rfc3339(issued.issued_at),
        }
        if oauth:
            body["scope"] = format_scopes(granted)
        if refresh is not None:
            body["refresh_token"] = refresh
        return TokenResponse(200, body, dict(_NO_STORE))
