"""Parsing ``/v2/<name>/...`` paths.

Repository names contain ``/`` and may end in words such as ``blobs``, so
routes are matched on the whole path with the name grammar, most specific
suffix first, instead of with a generic path parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.domain.digests import DIGEST_PATTERN
from registry.domain.names import NAME_PATTERN, TAG_PATTERN

_NAME = rf"(?P<name>{NAME_PATTERN})"
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("upload", re.compile(rf"{_NAME}/blobs/uploads/(?P<upload>[A-Za-z0-9_-]{{1,64}})")),
    ("uploads", re.compile(rf"{_NAME}/blobs/uploads/?")),
    ("blob", re.compile(rf"{_NAME}/blobs/(?P<digest>{DIGEST_PATTERN})")),
    (
        "manifest",
        re.compile(rf"{_NAME}/manifests/(?P<reference>{TAG_PATTERN}|{DIGEST_PATTERN})"),
    ),
    ("tags", re.compile(rf"{_NAME}/tags/list")),
    ("referrers", re.compile(rf"{_NAME}/referrers/(?P<digest>{DIGEST_PATTERN})")),
)
# Shapes that look like a route but whose parts break a grammar.
_LOOSE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)")),
    ("uploads", re.compile(r"(?P<name>.+)/blobs/uploads/?")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
)


@dataclass(frozen=True, slots=True)
class V2Path:
    kind: str
    name: str
    digest: str | None = None
    reference: str | None = None
    upload: str | None = None
    # False when the shape matched but the name/reference broke its grammar.
    valid: bool = True


# A route can only match a path containing its marker; skipping the others
# saves most of the (backtracking) name-grammar matching on hot paths.
_MARKERS = {
    "upload": "/blobs/uploads/",
    "uploads": "/blobs/uploads",
    "blob": "/blobs/",
    "manifest": "/manifests/",
    "tags": "/tags/list",
    "referrers": "/referrers/",
}


def parse_v2_path(rest: str) -> V2Path | None:
    """Parse what follows ``/v2/``; None when no route has this shape."""
    for routes, valid in ((_ROUTES, True), (_LOOSE, False)):
        for kind, pattern in routes:
            if _MARKERS[kind] not in rest:
                continue
            match = pattern.fullmatch(rest)
            if match is not None:
                groups = match.groupdict()
                return V2Path(
                    kind,
                    groups["name"],
                    groups.get("digest"),
                    groups.get("reference"),
                    groups.get("upload"),
                    valid=valid,
                )
    return None
