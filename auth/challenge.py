"""`WWW-Authenticate` header values for 401 answers."""

from __future__ import annotations

from collections.abc import Sequence

from auth.scopes import Access, format_scopes

INVALID_TOKEN = "invalid_token"  # noqa: S105 (an OAuth error code)
INSUFFICIENT_SCOPE = "insufficient_scope"


def _quote(value: str) -> str:
    # Header values are quoted-strings: escape the two characters that could end them.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(
    realm: str,
    service: str,
    scopes: Sequence[Access] = (),
    error: str | None = None,
) -> str:
    """`Bearer realm="…",service="…"[,scope="…"][,error="…"]`; scopes space-separated."""
    parts = [f"realm={_quote(realm)}", f"service={_quote(service)}"]
    if scopes:
        parts.append(f"scope={_quote(format_scopes(scopes))}")
    if error:
        parts.append(f"error={_quote(error)}")
    return "Bearer " + ",".join(parts)


def basic_challenge(realm: str) -> str:
    return f"Basic realm={_quote(realm)}"
