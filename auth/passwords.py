"""argon2id password hashing with uniform timing for unknown users."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth.settings import Argon2Settings

# Longer inputs are refused before hashing so nobody can make us hash megabytes.
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    def __init__(self, cost: Argon2Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_kib,
            parallelism=cost.parallelism,
            type=Type.ID,
        )
        # Verified against when the user does not exist, so both paths cost the same.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"password must be 1..{MAX_PASSWORD_LENGTH} characters")
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant-effort check; `stored_hash=None` (unknown user) still runs argon2."""
        if len(password) > MAX_PASSWORD_LENGTH:
            password = password[:MAX_PASSWORD_LENGTH]
            stored_hash = None
        target = stored_hash if stored_hash is not None else self._dummy_hash
        try:
            ok = self._hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
