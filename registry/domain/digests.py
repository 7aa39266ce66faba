"""Content digests (``algorithm:encoded``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registry.domain.errors import DIGEST_INVALID, RegistryError

# Lengths of the lowercase hex encoding per supported algorithm.
SUPPORTED: dict[str, int] = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
DIGEST_PATTERN = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def storage_key(self) -> str:
        """Where the bytes of a blob with this digest live by default."""
        return f"blobs/{self.algorithm}/{self.hex[:2]}/{self.hex}"


def looks_like_digest(value: str) -> bool:
    return _GRAMMAR.fullmatch(value) is not None


def parse_digest(value: str) -> Digest:
    """Parse and validate; unknown algorithms and bad encodings raise DIGEST_INVALID."""
    if len(value) > 256 or _GRAMMAR.fullmatch(value) is None:
        raise RegistryError(DIGEST_INVALID, f"invalid digest: {value[:200]!r}")
    algorithm, encoded = value.split(":", 1)
    expected = SUPPORTED.get(algorithm)
    if expected is None:
        raise RegistryError(DIGEST_INVALID, f"unsupported digest algorithm: {algorithm!r}")
    if len(encoded) != expected or not all(c in "0123456789abcdef" for c in encoded):
        raise RegistryError(DIGEST_INVALID, f"invalid {algorithm} digest: {value[:200]!r}")
    return Digest(algorithm, encoded)


def digest_of(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
