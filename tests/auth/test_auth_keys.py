from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth.keys import (
    KeyFileError,
    KeyRing,
    libtrust_kid,
    load_jwks,
    load_or_create_signing_key,
    load_public_key_pem,
    parse_jwks,
    signing_key_from_private,
)


def _b64(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def test_kid_matches_distribution_published_example() -> None:
    # The P-256 JWK and its kid from distribution's schema1 manifest spec example.
    public = ec.EllipticCurvePublicNumbers(
        _b64("3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A"),
        _b64("t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010"),
        ec.SECP256R1(),
    ).public_key()
    assert libtrust_kid(public) == "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4"


def test_generated_key_is_p256_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "signing-key.pem"
    first = load_or_create_signing_key(path)
    assert first.algorithm == "ES256"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.kid.split(":")) == 12
    again = load_or_create_signing_key(path)
    assert again.kid == first.kid
    assert not list(path.parent.glob(".*.tmp"))


def test_public_key_pem_and_rsa(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "rsa.pem").write_bytes(pem)
    vk = load_public_key_pem(tmp_path / "rsa.pem")
    assert vk.algorithm == "RS256"
    assert vk.kid == libtrust_kid(key.public_key())


def test_jwks_loading(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    nums = key.public_key().public_numbers()

    def enc(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(48, "big")).rstrip(b"=").decode()

    doc = {"keys": [{"kty": "EC", "crv": "P-384", "x": enc(nums.x), "y": enc(nums.y)}]}
    (tmp_path / "jwks.json").write_text(json.dumps(doc))
    [vk] = load_jwks(tmp_path / "jwks.json")
    assert vk.algorithm == "ES384"
    assert vk.kid == libtrust_kid(key.public_key())
    doc["keys"][0]["kid"] = "ext-1"
    assert parse_jwks(doc)[0].kid == "ext-1"


def test_jwks_refuses_symmetric_and_mismatched_alg() -> None:
    with pytest.raises(KeyFileError):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def enc(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "x": enc(key.x), "y": enc(key.y), "alg": "HS256"}
    with pytest.raises(KeyFileError):
        parse_jwks({"keys": [jwk]})


def test_keyring_lookup() -> None:
    signing = ec.generate_private_key(ec.SECP256R1())
    sk = signing_key_from_private(signing)
    ring = KeyRing([sk.verification_key()])
    assert ring.get(sk.kid) is not None
    assert ring.get("nope") is None
    assert len(ring) == 1


def test_keyring_refuses_two_keys_with_one_kid() -> None:
    """A JWKS may name its keys: a kid already taken by another configured key would
    shadow it, and its tokens would all fail. The same key twice is fine."""
    ours = signing_key_from_private(ec.generate_private_key(ec.SECP256R1())).verification_key()
    assert len(KeyRing([ours, ours])) == 1
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def enc(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "x": enc(other.x), "y": enc(other.y), "kid": ours.kid}
    [impostor] = parse_jwks({"keys": [jwk]})
    with pytest.raises(KeyFileError, match="two different keys"):
        KeyRing([ours, impostor])
