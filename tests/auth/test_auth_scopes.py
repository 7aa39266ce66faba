from __future__ import annotations

import pytest

from auth.scopes import (
    Access,
    ScopeError,
    format_scope,
    is_repository_name,
    parse_scope,
    parse_scopes,
    required_access,
)


def test_simple_repository_scope() -> None:
    a = parse_scope("repository:team/app:pull,push")
    assert a == Access("repository", "team/app", frozenset({"pull", "push"}))
    assert format_scope(a) == "repository:team/app:pull,push"


def test_host_port_name_splits_at_first_and_last_colon() -> None:
    a = parse_scope("repository:localhost:5000/team/app:pull")
    assert a.name == "localhost:5000/team/app"
    assert a.actions == frozenset({"pull"})


def test_plugin_class() -> None:
    a = parse_scope("repository(plugin):vieux/sshfs:pull")
    assert a.resource_class == "plugin"
    assert a.type == "repository"
    assert format_scope(a) == "repository(plugin):vieux/sshfs:pull"


def test_catalog_wildcard() -> None:
    a = parse_scope("registry:catalog:*")
    assert (a.type, a.name, a.actions) == ("registry", "catalog", frozenset({"*"}))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "repository",
        "repository:foo",
        ":foo:pull",
        "repository::pull",
        "repo sitory:foo:pull",
        "repository(:foo:pull",
        "repository(pl-ug):foo:pull",
        "repository:foo:PULL",
        "repository:foo bar:pull",
        "repository:foo\n:pull",
    ],
)
def test_malformed(bad: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(bad)


def test_parse_scopes_space_separated_and_repeated_merge() -> None:
    got = parse_scopes(["repository:a:pull repository:b:push", "repository:a:push"])
    assert got == [
        Access("repository", "a", frozenset({"pull", "push"})),
        Access("repository", "b", frozenset({"push"})),
    ]


def test_empty_actions_allowed() -> None:
    assert parse_scope("repository:a:").actions == frozenset()


def test_repository_name_grammar() -> None:
    assert is_repository_name("team/app-1.x__y")
    assert not is_repository_name("Team/app")
    assert not is_repository_name("team/app\n")
    assert not is_repository_name("localhost:5000/app")
    assert not is_repository_name("a" * 256)


@pytest.mark.parametrize(
    ("method", "route", "actions"),
    [
        ("GET", "manifest", {"pull"}),
        ("HEAD", "blob", {"pull"}),
        ("GET", "tags", {"pull"}),
        ("POST", "upload", {"pull", "push"}),
        ("PATCH", "upload", {"pull", "push"}),
        ("PUT", "manifest", {"pull", "push"}),
        ("DELETE", "manifest", {"delete"}),
        ("DELETE", "blob", {"delete"}),
        ("DELETE", "upload", {"pull", "push"}),
    ],
)
def test_required_access(method: str, route: str, actions: set[str]) -> None:
    assert required_access(method, route, "team/app") == [  # type: ignore[arg-type]
        Access("repository", "team/app", frozenset(actions))
    ]


def test_required_access_mount_and_catalog_and_base() -> None:
    got = required_access("POST", "upload", "team/app", mount_from="other/lib")
    assert got == [
        Access("repository", "team/app", frozenset({"pull", "push"})),
        Access("repository", "other/lib", frozenset({"pull"})),
    ]
    assert required_access("GET", "catalog") == [parse_scope("registry:catalog:*")]
    assert required_access("GET", "base") == []
