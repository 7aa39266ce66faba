"""Pagination cursors of the admin API, bound to the query that issued them.

A cursor carries its position (an offset, or the id the next page starts
below) and a fingerprint of its endpoint, path and filter parameters. Replayed
with other filters it would silently skip or repeat items, so it answers 400
instead, as a malformed one does. ``limit`` is not bound: any page size may
continue a listing. Cursors are not secrets; the fingerprint only detects
mistakes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from registry.domain.errors import REQUEST_INVALID, RegistryError

_VERSION = "c1"
# Row ids are 32-bit integers on PostgreSQL; offsets stay far below this too.
MAX_POSITION = 2**31 - 1


def _fingerprint(endpoint: str, filters: dict[str, Any]) -> str:
    canonical = json.dumps([endpoint, filters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(endpoint: str, filters: dict[str, Any], position: int) -> str:
    text = f"{_VERSION}:{position}:{_fingerprint(endpoint, filters)}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str | None, endpoint: str, filters: dict[str, Any]) -> int | None:
    """The position ``cursor`` continues from (None without one); 400 when it is not
    a cursor of this API or was issued for another endpoint or other filters."""
    if not cursor:
        return None
    parts: list[str] = []
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = text.split(":")
    except ValueError:
        pass
    if (
        len(parts) != 3
        or parts[0] != _VERSION
        or not (parts[1].isascii() and parts[1].isdigit())
        or len(parts[1]) > 10
        or int(parts[1]) > MAX_POSITION
    ):
        raise RegistryError(
            REQUEST_INVALID,
            "invalid cursor: pass the next_cursor of the previous page unchanged",
        )
    if parts[2] != _fingerprint(endpoint, filters):
        named = ", ".join(sorted(filters)) or "none"
        raise RegistryError(
            REQUEST_INVALID,
            "cursor does not match this query: it continues another listing"
            f" (its endpoint or filter parameters differ; parameters: {named}); repeat"
            " the first page's parameters, or drop the cursor to start over",
        )
    return int(parts[1])
