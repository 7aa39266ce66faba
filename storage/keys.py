"""The key grammar shared by every driver."""

from __future__ import annotations

import re

from storage.driver import InvalidKey

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
MAX_KEY_LENGTH = 1024


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key, else raise InvalidKey."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"invalid key length: {len(key)}")
    for part in key.split("/"):
        if part in (".", "..") or _COMPONENT.fullmatch(part) is None:
            raise InvalidKey(f"invalid key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Like :func:`check_key` but also accepts the empty prefix and a trailing slash."""
    stripped = prefix.rstrip("/")
    return "" if stripped == "" else check_key(stripped)


def check_upload_id(upload_id: str) -> str:
    if "/" in upload_id:
        raise InvalidKey(f"invalid upload id: {upload_id!r}")
    return check_key(upload_id)
