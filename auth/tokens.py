"""Issue and verify registry bearer tokens (JWT, distribution's claim set)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jwt
from jwt.exceptions import PyJWTError

from auth.keys import KeyRing, SigningKey
from auth.scopes import WILDCARD, Access, merge


class InvalidToken(Exception):
    """A bearer token that must not be honoured; the message says why (safe to log)."""


@dataclass(frozen=True)
class TokenClaims:
    issuer: str
    subject: str
    audience: tuple[str, ...]
    expires_at: int
    not_before: int | None
    issued_at: int | None
    jwt_id: str | None
    access: tuple[Access, ...]

    def allows(self, needed: Access) -> bool:
        return not self.missing([needed])

    def missing(self, needed: Sequence[Access]) -> list[Access]:
        """The required entries this token does not cover (empty: allowed).

        As in distribution's access controller: a resource is its type and name (the
        deprecated resource class is ignored), and the action `*` covers every action.
        """
        have: dict[tuple[str, str], set[str]] = {}
        for a in self.access:
            have.setdefault((a.type, a.name), set()).update(a.actions)
        out = []
        for want in needed:
            actions = have.get((want.type, want.name), set())
            if WILDCARD not in actions and not want.actions <= actions:
                out.append(want)
        return out


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: int
    access: tuple[Access, ...]


class TokenIssuer:
    def __init__(self, key: SigningKey, issuer: str, service: str, ttl_seconds: int) -> None:
        self._key = key
        self._issuer = issuer
        self._service = service
        self._ttl = ttl_seconds

    def issue(
        self, subject: str, access: Iterable[Access], now: float | None = None
    ) -> IssuedToken:
        issued = int(time.time() if now is None else now)
        granted = tuple(merge(access))
        claims = {
            "iss": self._issuer,
            "sub": subject,
            "aud": self._service,
            "exp": issued + self._ttl,
            "nbf": issued,
            "iat": issued,
            "jti": secrets.token_urlsafe(18),
            "access": [a.to_claim() for a in granted],
        }
        token = jwt.encode(
            claims,
            self._key.private_key,
            algorithm=self._key.algorithm,
            headers={"kid": self._key.kid, "typ": "JWT"},
        )
        return IssuedToken(token, self._ttl, issued, granted)


def _parse_access(raw: object) -> tuple[Access, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidToken("access claim is not a list")
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidToken("access entry is not an object")
        typ, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        cls = entry.get("class")
        if not isinstance(typ, str) or not isinstance(name, str):
            raise InvalidToken("access entry lacks type or name")
        if actions is None:
            actions = []
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise InvalidToken("access actions are not a list of strings")
        if cls is not None and not isinstance(cls, str):
            raise InvalidToken("access class is not a string")
        out.append(Access(typ, name, frozenset(actions), cls or None))
    return tuple(out)


class TokenVerifier:
    """Verifies with keys from our own ring only; the algorithm comes from the key."""

    def __init__(self, keys: KeyRing, issuer: str, audience: str, leeway_seconds: int) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    def verify(self, token: str) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token has no kid")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        if header.get("alg") != key.algorithm:
            raise InvalidToken("algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"], "verify_sub": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token is for another service") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token from an untrusted issuer") from exc
        except PyJWTError as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from exc
        return _claims_from(claims)


def _opt_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} is not a number")
    return int(value)


def _claims_from(claims: dict[str, object]) -> TokenClaims:
    aud = claims.get("aud")
    if isinstance(aud, str):
        audience: tuple[str, ...] = (aud,)
    elif isinstance(aud, list):
        audience = tuple(str(a) for a in aud)
    else:
        audience = ()
    sub = claims.get("sub", "")
    jti = claims.get("jti")
    exp = _opt_int(claims.get("exp"), "exp")
    if exp is None:
        raise InvalidToken("token has no exp")
    return TokenClaims(
        issuer=str(claims.get("iss")),
        subject=sub if isinstance(sub, str) else "",
        audience=audience,
        expires_at=exp,
        not_before=_opt_int(claims.get("nbf"), "nbf"),
        issued_at=_opt_int(claims.get("iat"), "iat"),
        jwt_id=jti if isinstance(jti, str) else None,
        access=_parse_access(claims.get("access")),
    )
