"""Large pseudo-random bodies generated on the fly, hashed as they are produced."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

MiB = 1024 * 1024
GiB = 1024 * MiB


class SeededStream:
    """A reproducible byte stream of ``size`` bytes, produced piece by piece.

    Only one piece (``piece`` bytes) exists at a time; ``sha256`` covers what was produced so far.
    """

    def __init__(self, size: int, seed: int, piece: int = MiB) -> None:
        self.size = size
        self.piece = piece
        self.produced = 0
        self.sha256 = hashlib.sha256()
        self._rng = random.Random(seed)

    def take(self, length: int) -> Iterator[bytes]:
        """The next ``length`` bytes of the stream, in pieces."""
        if self.produced + length > self.size:
            raise ValueError("reading past the end of the stream")
        remaining = length
        while remaining:
            chunk = self._rng.randbytes(min(self.piece, remaining))
            self.sha256.update(chunk)
            self.produced += len(chunk)
            remaining -= len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        if self.produced != self.size:
            raise ValueError("the digest is only known once the whole stream was produced")
        return "sha256:" + self.sha256.hexdigest()


def stream_digest(size: int, seed: int, piece: int = MiB) -> str:
    """Digest of ``SeededStream(size, seed)`` without sending it anywhere."""
    stream = SeededStream(size, seed, piece)
    for _ in stream.take(size):
        pass
    return stream.digest
