"""Hashers whose state can be saved between requests.

An upload may be continued by any process, so the running hash of its bytes
must live in the database, not in memory. OpenSSL's SHA-2 contexts are plain
structs: we drive them through ctypes and store their raw bytes. Where
libcrypto cannot be loaded, ``saved_state`` is None and the caller rehashes
the stored bytes when it resumes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol

# sizeof(SHA256_CTX) and sizeof(SHA512_CTX) in OpenSSL 1.1 and 3.x.
_CTX_SIZES = {"sha256": 112, "sha512": 216}
_DIGEST_SIZES = {"sha256": 32, "sha512": 64}


def _load_libcrypto() -> ctypes.CDLL | None:
    for name in ("libcrypto.so.3", ctypes.util.find_library("crypto"), "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for prefix in ("SHA256", "SHA512"):
                for suffix in ("_Init", "_Update", "_Final"):
                    getattr(lib, prefix + suffix)
            return lib
        except (OSError, AttributeError):
            continue
    return None


_LIB = _load_libcrypto()


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...

    def saved_state(self) -> bytes | None: ...


class ResumableHasher:
    """SHA-256/512 over OpenSSL's low-level API; ``saved_state`` is its raw context."""

    def __init__(self, algorithm: str, state: bytes | None = None) -> None:
        if _LIB is None:
            raise RuntimeError("libcrypto is not available")
        size = _CTX_SIZES[algorithm]
        self.algorithm = algorithm
        self._prefix = algorithm.upper()
        if state is None:
            self._ctx = ctypes.create_string_buffer(size)
            getattr(_LIB, f"{self._prefix}_Init")(self._ctx)
        else:
            if len(state) != size:
                raise ValueError("saved hash state has the wrong size")
            self._ctx = ctypes.create_string_buffer(state, size)
        self._update = getattr(_LIB, f"{self._prefix}_Update")

    def update(self, data: bytes) -> None:
        # ctypes releases the GIL during the call, so large updates run in parallel.
        self._update(self._ctx, data, ctypes.c_size_t(len(data)))

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx.raw))
        out = ctypes.create_string_buffer(_DIGEST_SIZES[self.algorithm])
        getattr(_LIB, f"{self._prefix}_Final")(out, copy)
        return out.raw.hex()

    def saved_state(self) -> bytes | None:
        return self._ctx.raw


class PlainHasher:
    """hashlib fallback: cannot be saved."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def saved_state(self) -> bytes | None:
        return None


def new_hasher(algorithm: str = "sha256", state: bytes | None = None) -> Hasher:
    """A hasher for ``algorithm``, resumed from ``state`` when given."""
    if algorithm not in _CTX_SIZES:
        raise ValueError(f"unsupported algorithm {algorithm}")
    if _LIB is not None:
        return ResumableHasher(algorithm, state)
    if state is not None:
        raise ValueError("cannot resume a hash without libcrypto")
    return PlainHasher(algorithm)


def resumable() -> bool:
    return _LIB is not None
