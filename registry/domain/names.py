"""Grammars for repository names, tags and pagination."""

from __future__ import annotations

import re

from registry.domain.errors import NAME_INVALID, TAG_INVALID, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"{_COMPONENT}(?:/{_COMPONENT})*"
NAME_RE = re.compile(NAME_PATTERN)
TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
TAG_RE = re.compile(TAG_PATTERN)
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError(NAME_INVALID, f"invalid repository name: {name[:300]!r}")
    return name


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(TAG_INVALID, f"invalid tag: {tag[:200]!r}")
    return tag
