"""Scope grammar (`type[(class)]:name:actions`) and the access a request needs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

REPOSITORY = "repository"
REGISTRY = "registry"
PULL, PUSH, DELETE = "pull", "push", "delete"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
CATALOG = "catalog"
# In a token's actions: every action on that resource (distribution reads it so too).
WILDCARD = "*"

_TYPE_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_CLASS_RE = re.compile(r"[a-zA-Z0-9]+")
_ACTION_RE = re.compile(r"[a-z]+|\*")
# Resource names may carry a host[:port]/ prefix, hence ':' and uppercase are allowed.
_NAME_RE = re.compile(r"[A-Za-z0-9._:/-]+")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPO_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME_LENGTH = 255

RouteKind = Literal["base", "catalog", "tags", "manifest", "blob", "upload", "referrers"]


class ScopeError(ValueError):
    """A scope string that does not follow the grammar."""


@dataclass(frozen=True)
class Access:
    """One resource and the actions on it, as in a scope or a token's `access` claim."""

    type: str
    name: str
    actions: frozenset[str]
    resource_class: str | None = None

    def to_claim(self) -> dict[str, object]:
        claim: dict[str, object] = {
            "type": self.type,
            "name": self.name,
            "actions": sorted(self.actions),
        }
        if self.resource_class:
            claim["class"] = self.resource_class
        return claim

    def __str__(self) -> str:
        return format_scope(self)


def is_repository_name(name: str) -> bool:
    """True for a name of our own repositories (no host prefix), per the OCI grammar."""
    return len(name) <= MAX_NAME_LENGTH and _REPO_NAME_RE.fullmatch(name) is not None


def parse_scope(scope: str) -> Access:
    """Parse one scope; type splits at the first ':' and actions at the last one."""
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last == first:
        raise ScopeError(f"malformed scope {scope!r}")
    type_part, name, actions_part = scope[:first], scope[first + 1 : last], scope[last + 1 :]
    resource_class: str | None = None
    if type_part.endswith(")"):
        open_at = type_part.find("(")
        if open_at <= 0:
            raise ScopeError(f"malformed resource class in {scope!r}")
        resource_class = type_part[open_at + 1 : -1]
        type_part = type_part[:open_at]
        if not _CLASS_RE.fullmatch(resource_class):
            raise ScopeError(f"malformed resource class in {scope!r}")
    if not _TYPE_RE.fullmatch(type_part):
        raise ScopeError(f"malformed resource type in {scope!r}")
    if not name or len(name) > MAX_NAME_LENGTH * 2 or not _NAME_RE.fullmatch(name):
        raise ScopeError(f"malformed resource name in {scope!r}")
    actions = frozenset(a for a in actions_part.split(",") if a)
    if not all(_ACTION_RE.fullmatch(a) for a in actions):
        raise ScopeError(f"malformed actions in {scope!r}")
    return Access(type_part, name, actions, resource_class)


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Parse repeated and/or space-separated scope parameters, merging duplicates."""
    parsed = [parse_scope(part) for value in values for part in value.split(" ") if part]
    return merge(parsed)


def merge(accesses: Iterable[Access]) -> list[Access]:
    """Union the actions of entries naming the same resource, keeping first-seen order."""
    merged: dict[tuple[str, str | None, str], set[str]] = {}
    for access in accesses:
        merged.setdefault((access.type, access.resource_class, access.name), set()).update(
            access.actions
        )
    return [Access(t, n, frozenset(a), c) for (t, c, n), a in merged.items()]


def format_scope(access: Access) -> str:
    type_part = access.type
    if access.resource_class:
        type_part += f"({access.resource_class})"
    return f"{type_part}:{access.name}:{','.join(sorted(access.actions))}"


def format_scopes(accesses: Sequence[Access]) -> str:
    """Space-separated scope list, as used in challenges and the OAuth `scope` field."""
    return " ".join(format_scope(a) for a in accesses)


def repository(name: str, *actions: str) -> Access:
    return Access(REPOSITORY, name, frozenset(actions))


def catalog() -> Access:
    return Access(REGISTRY, CATALOG, frozenset({WILDCARD}))


def required_access(
    method: str, route: RouteKind, name: str | None = None, mount_from: str | None = None
) -> list[Access]:
    """Access a request needs; an empty list means any authenticated token will do.

    Cancelling an upload (DELETE on `upload`) needs push, not delete: it removes no
    repository content and the session is bound to its creator anyway.
    """
    method = method.upper()
    if route == "base":
        return []
    if route == "catalog":
        return [catalog()]
    if name is None:
        raise ValueError(f"route {route!r} needs a repository name")
    if method in ("GET", "HEAD"):
        needed = [repository(name, PULL)]
    elif method in ("POST", "PUT", "PATCH") or (method == "DELETE" and route == "upload"):
        needed = [repository(name, PULL, PUSH)]
    elif method == "DELETE":
        needed = [repository(name, DELETE)]
    else:
        raise ValueError(f"unsupported method {method!r}")
    if mount_from is not None and route == "upload":
        needed.append(repository(mount_from, PULL))
    return merge(needed)
