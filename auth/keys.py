"""Signing and verification keys: generation, PEM/JWKS loading, libtrust key IDs.

The algorithm of every key is fixed here from its type, so that verification never
takes it from a token header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from auth.settings import AuthSettings

log = logging.getLogger(__name__)

PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]  # noqa: UP007
PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]  # noqa: UP007

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512"})


class KeyFileError(ValueError):
    """A key file that cannot be used (wrong type, unreadable, symmetric...)."""


def libtrust_kid(public_key: PublicKey) -> str:
    """Key ID as CNCF distribution computes it: base32 of the first 240 bits of the
    SHA-256 of the DER SubjectPublicKeyInfo, in 12 colon-separated groups of 4."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def algorithm_for(public_key: PublicKey, rsa_algorithm: str = "RS256") -> str:
    """The one algorithm a key may verify: by curve for EC, configured for RSA."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(public_key.curve.name)
        if alg is None:
            raise KeyFileError(f"unsupported EC curve {public_key.curve.name}")
        return alg
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise KeyFileError("RSA keys must have at least 2048 bits")
        return rsa_algorithm
    raise KeyFileError(f"unsupported key type {type(public_key).__name__}")


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    public_key: PublicKey
    algorithm: str


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: PrivateKey
    algorithm: str

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, self.private_key.public_key(), self.algorithm)


def _as_private(key: object, source: Path) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise KeyFileError(f"{source}: only EC and RSA private keys are supported")


def _as_public(key: object, source: str) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return key
    raise KeyFileError(f"{source}: only EC and RSA public keys are supported")


def signing_key_from_private(private_key: PrivateKey) -> SigningKey:
    public = private_key.public_key()
    return SigningKey(libtrust_kid(public), private_key, algorithm_for(public))


def load_signing_key(path: Path) -> SigningKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from exc
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("signing key %s is readable by group or others; chmod 600 it", path)
    return signing_key_from_private(_as_private(key, path))


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Load the PEM key at `path`, or create an EC P-256 key there (mode 0600).

    O_EXCL makes concurrent first starts agree on a single key: the loser loads it.
    """
    if path.exists():
        return load_signing_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if another process won the race
        except FileExistsError:
            return load_signing_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated token signing key %s", path)
    return signing_key_from_private(private)


def load_public_key_pem(path: Path) -> VerificationKey:
    """A PEM public key or X.509 certificate; its kid is the libtrust fingerprint."""
    data = path.read_bytes()
    key: object
    if b"-----BEGIN CERTIFICATE-----" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a PEM public key or certificate") from exc
    public = _as_public(key, str(path))
    return VerificationKey(libtrust_kid(public), public, algorithm_for(public))


def parse_jwks(document: Mapping[str, object], source: str = "jwks") -> list[VerificationKey]:
    """Public keys of a JWKS; symmetric (`oct`) keys are refused to rule out HS* confusion."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise KeyFileError(f"{source}: no 'keys' list")
    result: list[VerificationKey] = []
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("kty") not in ("EC", "RSA"):
            raise KeyFileError(f"{source}: only EC and RSA keys are accepted")
        if "d" in entry:
            raise KeyFileError(f"{source}: private key material in a public JWKS")
        if entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(entry)
        except PyJWTError as exc:
            raise KeyFileError(f"{source}: bad JWK: {exc}") from exc
        public = _as_public(jwk.key, source)
        declared = entry.get("alg")
        rsa_alg = declared if isinstance(declared, str) and declared.startswith("RS") else "RS256"
        alg = algorithm_for(public, rsa_alg)
        if declared is not None and declared != alg:
            raise KeyFileError(f"{source}: alg {declared!r} does not fit the key type")
        kid = entry.get("kid")
        result.append(
            VerificationKey(kid if isinstance(kid, str) else libtrust_kid(public), public, alg)
        )
    return result


def load_jwks(path: Path) -> list[VerificationKey]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: unreadable JWKS") from exc
    if not isinstance(document, dict):
        raise KeyFileError(f"{path}: JWKS must be an object")
    return parse_jwks(document, str(path))


def _spki(key: VerificationKey) -> bytes:
    return key.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _same_key(a: VerificationKey, b: VerificationKey) -> bool:
    """The same public key for the same algorithm (e.g. our own key listed again)."""
    return a.algorithm == b.algorithm and _spki(a) == _spki(b)


class KeyRing:
    """The only keys tokens are verified with, indexed by kid."""

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys: dict[str, VerificationKey] = {}
        for key in keys:
            if key.algorithm not in ASYMMETRIC_ALGORITHMS:
                raise KeyFileError(f"algorithm {key.algorithm} is not allowed")
            known = self._keys.get(key.kid)
            # Otherwise the later key would silently shadow the earlier one, and every
            # token signed with that one would fail as if forged.
            if known is not None and not _same_key(known, key):
                raise KeyFileError(f"two different keys have the key ID {key.kid!r}")
            self._keys[key.kid] = key

    def get(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def keyring_from_settings(settings: AuthSettings, signing: SigningKey | None) -> KeyRing:
    """Our own signing key (token mode) plus configured extra keys, e.g. for rotation."""
    keys: list[VerificationKey] = []
    if signing is not None:
        keys.append(signing.verification_key())
    keys.extend(load_public_key_pem(p) for p in settings.trusted_public_keys)
    if settings.jwks_file is not None:
        keys.extend(load_jwks(settings.jwks_file))
    return KeyRing(keys)
