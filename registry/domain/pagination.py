"""Parsing of ``n``/``last`` list parameters."""

from __future__ import annotations

from dataclasses import dataclass

from registry.domain.errors import PAGINATION_NUMBER_INVALID, REQUEST_INVALID, RegistryError


@dataclass(frozen=True, slots=True)
class Page:
    limit: int | None
    last: str | None


def parse_page(n: str | None, last: str | None, cap: int) -> Page:
    """``n`` must be a non-negative integer no larger than ``cap``."""
    limit: int | None = None
    if n is not None and n != "":
        if not (n.isascii() and n.isdigit()) or len(n) > 12:
            raise RegistryError(PAGINATION_NUMBER_INVALID, f"invalid n: {n[:50]!r}")
        limit = int(n)
        if limit > cap:
            raise RegistryError(
                PAGINATION_NUMBER_INVALID, f"n must not exceed {cap}", detail={"max": cap}
            )
    if last and not last.isprintable():
        # No name or tag holds control characters; PostgreSQL rejects NUL outright.
        raise RegistryError(REQUEST_INVALID, "invalid last: control characters")
    return Page(limit=limit, last=last or None)
