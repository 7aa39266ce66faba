"""Conditional reads: ``If-None-Match`` on manifests and blobs (RFC 9110 13.1.2, 13.2.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.http.errors import API_VERSION_HEADER

_SEPARATORS = " \t,"
_IF_NONE_MATCH = b"if-none-match"


def lists_etag(field: str, etag: str) -> bool:
    """Whether an If-None-Match field value names ``etag`` (a strong ``"<digest>"``).

    Weak comparison: ``W/"x"`` matches ``"x"``. ``*`` matches, since callers only ask
    once the representation is known to exist. Parsing stops at the first malformed
    element (an unquoted digest, say) and the condition then counts as not met: the full
    response is always a correct answer to a condition we cannot read.
    """
    rest = field
    while True:
        rest = rest.lstrip(_SEPARATORS)
        if not rest:
            return False
        if rest[0] == "*":
            return len(rest) == 1 or rest[1] in _SEPARATORS
        if rest.startswith("W/"):
            rest = rest[2:]
        if not rest.startswith('"'):
            return False
        end = rest.find('"', 1)
        if end < 0:
            return False
        tag, rest = rest[: end + 1], rest[end + 1 :]
        if rest and rest[0] not in _SEPARATORS:
            return False
        if tag == etag:
            return True


def none_match(request: Request, etag: str) -> bool:
    """True when the request's If-None-Match condition is false for ``etag``: answer 304.

    Scans the raw ASGI headers (names arrive lowercased): on the hot pull path, which
    rarely carries the field, that costs a fraction of building ``request.headers``.
    """
    values = [value for key, value in request.scope["headers"] if key == _IF_NONE_MATCH]
    if not values:
        return False
    # Repeated field lines form one comma-separated list (RFC 9110 5.3).
    return lists_etag(b",".join(values).decode("latin-1"), etag)


def not_modified(digest: str, etag: str, **extra: str) -> Response:
    """304 with the validator and the digest, no body and no Content-Length (RFC 9110
    15.4.5: the client keeps the representation it has, so the 200's length is not sent)."""
    headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "ETag": etag, **extra}
    return Response(status_code=304, headers=headers)
