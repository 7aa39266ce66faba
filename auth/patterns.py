"""Repository name patterns: `*` matches any run of characters, `/` included."""

from __future__ import annotations

import re
from functools import lru_cache

from auth.scopes import REPOSITORY_ACTIONS

_PATTERN_RE = re.compile(r"[a-z0-9._/*-]{1,255}")


def validate_pattern(pattern: str) -> str:
    if not _PATTERN_RE.fullmatch(pattern):
        raise ValueError(f"invalid repository pattern {pattern!r}")
    return pattern


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def matches(pattern: str, name: str) -> bool:
    # fullmatch: `$` would also accept a name with a trailing newline.
    return _compile(pattern).fullmatch(name) is not None


def parse_actions(actions: str | list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """`pull,push` (or a collection) → validated set of repository actions."""
    items = actions.split(",") if isinstance(actions, str) else list(actions)
    result = frozenset(a.strip() for a in items if a.strip())
    if not result or not result <= REPOSITORY_ACTIONS:
        raise ValueError(f"actions must be a non-empty subset of {sorted(REPOSITORY_ACTIONS)}")
    return result


def format_actions(actions: frozenset[str]) -> str:
    return ",".join(sorted(actions))
