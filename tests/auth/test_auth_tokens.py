from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth.challenge import bearer_challenge
from auth.keys import KeyRing, SigningKey, signing_key_from_private
from auth.scopes import Access, parse_scope, required_access
from auth.tokens import InvalidToken, TokenIssuer, TokenVerifier

ISS, AUD = "lading-test", "registry.example"


@pytest.fixture
def key() -> SigningKey:
    return signing_key_from_private(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(KeyRing([key.verification_key()]), ISS, AUD, leeway_seconds=5)


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISS,
        "sub": "alice",
        "aud": AUD,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "a/b", "actions": ["pull"]}],
    }
    claims.update(over)
    return claims


def _sign(key: SigningKey, claims: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(
        claims, key.private_key, algorithm="ES256", headers={"kid": key.kid, **headers}
    )


def test_round_trip(key: SigningKey, verifier: TokenVerifier) -> None:
    issuer = TokenIssuer(key, ISS, AUD, 300)
    issued = issuer.issue("alice", [parse_scope("repository:a/b:pull,push")])
    header = jwt.get_unverified_header(issued.token)
    assert header["kid"] == key.kid and header["alg"] == "ES256"
    claims = verifier.verify(issued.token)
    assert claims.subject == "alice"
    assert claims.audience == (AUD,)
    assert claims.expires_at - claims.issued_at == 300  # type: ignore[operator]
    assert claims.allows(Access("repository", "a/b", frozenset({"push"})))
    assert not claims.allows(Access("repository", "a/b", frozenset({"delete"})))
    assert not claims.allows(Access("repository", "a/c", frozenset({"pull"})))


def test_empty_access_token_is_valid(key: SigningKey, verifier: TokenVerifier) -> None:
    token = TokenIssuer(key, ISS, AUD, 300).issue("", []).token
    assert verifier.verify(token).access == ()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # Times are offsets from when the test runs, not from collection time.
        ({"exp": -60}, "expired"),
        ({"nbf": 120}, "not yet valid"),
        ({"aud": "other-service"}, "another service"),
        ({"iss": "someone-else"}, "untrusted issuer"),
    ],
)
def test_claim_checks(
    key: SigningKey, verifier: TokenVerifier, claims: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()}
    with pytest.raises(InvalidToken, match=reason):
        verifier.verify(_sign(key, _claims(**claims)))


def test_leeway_accepts_slightly_expired(key: SigningKey, verifier: TokenVerifier) -> None:
    verifier.verify(_sign(key, _claims(exp=int(time.time()) - 2)))


def test_missing_exp_rejected(key: SigningKey, verifier: TokenVerifier) -> None:
    claims = _claims()
    del claims["exp"]
    with pytest.raises(InvalidToken):
        verifier.verify(_sign(key, claims))


def test_tampered_payload(key: SigningKey, verifier: TokenVerifier) -> None:
    token = _sign(key, _claims())
    head, payload, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["access"][0]["actions"] = ["pull", "push", "delete"]
    new_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        verifier.verify(f"{head}.{new_payload}.{sig}")


def test_tampered_signature(key: SigningKey, verifier: TokenVerifier) -> None:
    token = _sign(key, _claims())
    head, payload, sig = token.split(".")
    bad = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(InvalidToken):
        verifier.verify(f"{head}.{payload}.{bad}")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg(header)}.{seg(claims)}."


def test_alg_none_rejected(key: SigningKey, verifier: TokenVerifier) -> None:
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": key.kid}, _claims())
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_hs256_with_public_key_as_secret_rejected(key: SigningKey, verifier: TokenVerifier) -> None:
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    unsigned = _unsigned(header, _claims())[:-1]
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    token = unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="algorithm"):
        verifier.verify(token)


def test_unknown_kid_and_missing_kid(key: SigningKey, verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken, match="unknown"):
        verifier.verify(
            jwt.encode(_claims(), key.private_key, algorithm="ES256", headers={"kid": "AAAA"})
        )
    with pytest.raises(InvalidToken, match="no kid"):
        verifier.verify(jwt.encode(_claims(), key.private_key, algorithm="ES256"))


def test_other_key_with_our_kid_rejected(key: SigningKey, verifier: TokenVerifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_claims(), other, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_embedded_jwk_header_is_ignored(key: SigningKey, verifier: TokenVerifier) -> None:
    other = signing_key_from_private(ec.generate_private_key(ec.SECP256R1()))
    token = jwt.encode(
        _claims(),
        other.private_key,
        algorithm="ES256",
        headers={"kid": other.kid, "jwk": {"kty": "EC"}},
    )
    with pytest.raises(InvalidToken, match="unknown"):
        verifier.verify(token)


def test_rs256_key_pinned(verifier: TokenVerifier) -> None:
    rsa_key = signing_key_from_private(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ring = KeyRing([rsa_key.verification_key()])
    v = TokenVerifier(ring, ISS, AUD, 5)
    good = jwt.encode(_claims(), rsa_key.private_key, "RS256", headers={"kid": rsa_key.kid})
    assert v.verify(good).subject == "alice"
    ps = jwt.encode(_claims(), rsa_key.private_key, "PS256", headers={"kid": rsa_key.kid})
    with pytest.raises(InvalidToken, match="algorithm"):
        v.verify(ps)


def test_malformed_access_claim(key: SigningKey, verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(_sign(key, _claims(access="repository:a/b:pull")))
    with pytest.raises(InvalidToken):
        verifier.verify(_sign(key, _claims(access=[{"type": "repository", "actions": ["pull"]}])))


def test_garbage() -> None:
    v = TokenVerifier(KeyRing([]), ISS, AUD, 5)
    for junk in ["", "abc", "a.b.c", "....."]:
        with pytest.raises(InvalidToken):
            v.verify(junk)


def test_challenge_format() -> None:
    value = bearer_challenge(
        "https://r.example/token",
        "r.example",
        [parse_scope("repository:a/b:pull,push"), parse_scope("repository:c:pull")],
        "insufficient_scope",
    )
    assert value == (
        'Bearer realm="https://r.example/token",service="r.example",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"'
    )
    assert bearer_challenge('x"y', "s") == 'Bearer realm="x\\"y",service="s"'


def test_wildcard_action_covers_every_action_on_that_resource_only(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    """distribution's access controller reads `*` in a token's actions as any action on
    that resource, so tokens from external issuers that grant `*` must work here too."""
    star = [{"type": "repository", "name": "a/b", "actions": ["*"]}]
    claims = verifier.verify(_sign(key, _claims(access=star)))
    for method in ("GET", "PUT", "DELETE"):
        assert claims.missing(required_access(method, "manifest", "a/b")) == [], method
    assert claims.allows(Access("repository", "a/b", frozenset({"delete"})))
    assert claims.missing(required_access("GET", "manifest", "a/c")) != []
    assert claims.missing(required_access("GET", "catalog")) != []


def test_resource_class_is_ignored_when_authorizing(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    """scope.md: `repository` and `repository(plugin)` are equal when authorizing a token."""
    plugin = [{"type": "repository", "class": "plugin", "name": "a/b", "actions": ["pull"]}]
    claims = verifier.verify(_sign(key, _claims(access=plugin)))
    assert claims.missing(required_access("GET", "blob", "a/b")) == []
    assert claims.allows(Access("repository", "a/b", frozenset({"pull"})))
    assert claims.missing(required_access("PUT", "manifest", "a/b")) != []
