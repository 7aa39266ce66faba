from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import accounts, robots
from auth.authn import authenticate
from auth.models import PermissionRule, utcnow
from auth.passwords import Passwords
from auth.policy import ANONYMOUS, Policy, Principal
from auth.scopes import Access, catalog, parse_scopes, repository
from auth.settings import AuthSettings

Settings = Callable[..., AuthSettings]
ALL = ("pull", "push", "delete")


def _p(session: Session, name: str) -> Principal:
    user = accounts.get_user(session, name)
    assert user is not None
    return Principal(user.username, user.id, user.is_admin)


def test_password_hashing(passwords: Passwords) -> None:
    h = passwords.hash("s3cret")
    assert h.startswith("$argon2id$")
    assert passwords.verify(h, "s3cret")
    assert not passwords.verify(h, "wrong")
    assert not passwords.verify(None, "s3cret")  # unknown user: dummy hash, still False
    assert not passwords.verify("garbage", "s3cret")
    with pytest.raises(ValueError):
        passwords.hash("")


def test_user_lifecycle(session: Session, passwords: Passwords) -> None:
    accounts.add_user(session, passwords, "alice", "pw1")
    with pytest.raises(accounts.AccountError):
        accounts.add_user(session, passwords, "alice", "x")
    with pytest.raises(accounts.AccountError):
        accounts.add_user(session, passwords, "Bad Name", "x")
    assert authenticate(session, passwords, "alice", "pw1") is not None
    accounts.set_password(session, passwords, "alice", "pw2")
    assert authenticate(session, passwords, "alice", "pw1") is None
    assert authenticate(session, passwords, "alice", "pw2") is not None
    accounts.set_disabled(session, "alice", True)
    assert authenticate(session, passwords, "alice", "pw2") is None
    assert authenticate(session, passwords, "nobody", "pw2") is None
    accounts.create_group(session, "devs")
    accounts.add_member(session, "devs", "alice")
    [info] = accounts.list_users(session)
    assert (info.username, info.disabled, info.groups) == ("alice", True, ("devs",))
    accounts.grant(session, "user", "alice", "a/*", "pull")
    accounts.remove_user(session, "alice")
    session.commit()
    assert accounts.list_users(session) == []
    assert session.scalars(select(PermissionRule)).all() == []


def test_ensure_admin(session: Session, passwords: Passwords, make_settings: Settings) -> None:
    settings = make_settings(admin_username="root", admin_password="hunter2")
    assert accounts.ensure_admin(session, passwords, settings)
    assert not accounts.ensure_admin(session, passwords, settings)
    p = authenticate(session, passwords, "root", "hunter2")
    assert p is not None and p.is_admin


def test_rules_patterns_groups_and_intersection(
    session: Session,
    passwords: Passwords,
    make_settings: Settings,
) -> None:
    policy = Policy(make_settings())
    accounts.add_user(session, passwords, "alice", "pw")
    accounts.add_user(session, passwords, "bob", "pw")
    accounts.create_group(session, "team")
    accounts.add_member(session, "team", "bob")
    accounts.grant(session, "user", "alice", "team/*", "pull,push")
    accounts.grant(session, "group", "team", "team/app", ["pull", "delete"])
    alice, bob = _p(session, "alice"), _p(session, "bob")

    want = parse_scopes(["repository:team/app:pull,push,delete repository:other/x:pull"])
    assert policy.grant(session, alice, want) == [repository("team/app", "pull", "push")]
    assert policy.grant(session, bob, want) == [repository("team/app", "pull", "delete")]
    # `team/*` covers deeper paths but not the bare prefix or look-alikes.
    assert policy.allowed_actions(session, alice, "team/a/b") == {"pull", "push"}
    assert policy.allowed_actions(session, alice, "team") == set()
    assert policy.allowed_actions(session, alice, "teamx/app") == set()
    # Lacking scopes is not an error: the grant is just smaller, possibly empty.
    assert policy.grant(session, alice, [repository("secret/x", "pull")]) == []
    # Signed-in users may ask for the catalog; it is filtered per repository.
    assert policy.grant(session, alice, [catalog()]) == [catalog()]
    assert policy.pullable(session, "alice", ["team/a/b", "secret/x"]) == ["team/a/b"]
    # Names outside the repository grammar are never granted, whatever the pattern.
    accounts.grant(session, "user", "alice", "*", "pull")
    assert policy.grant(session, alice, parse_scopes(["repository:localhost:5000/x:pull"])) == []
    # The deprecated resource class is ignored (scope.md): granted as a plain repository.
    assert policy.grant(
        session, alice, [Access("repository", "x", frozenset({"pull"}), "plugin")]
    ) == [repository("x", "pull")]


def test_admin_and_catalog(session: Session, passwords: Passwords, make_settings: Settings) -> None:
    policy = Policy(make_settings())
    accounts.add_user(session, passwords, "root", "pw", admin=True)
    root = _p(session, "root")
    got = policy.grant(session, root, [repository("any/thing", *ALL), catalog()])
    assert got == [repository("any/thing", *ALL), catalog()]


def test_public_and_anonymous(
    session: Session, passwords: Passwords, make_settings: Settings
) -> None:
    policy = Policy(make_settings(public_repositories=("library/*",)))
    accounts.add_public_pattern(session, "pub")
    want = [
        repository("library/busybox", "pull", "push"),
        repository("pub", "pull"),
        repository("private/x", "pull"),
    ]
    assert policy.grant(session, ANONYMOUS, want) == [
        repository("library/busybox", "pull"),
        repository("pub", "pull"),
    ]
    assert policy.grant(session, ANONYMOUS, [catalog()]) == []
    assert accounts.list_public_patterns(session) == ["pub"]


def test_personal_namespaces(
    session: Session, passwords: Passwords, make_settings: Settings
) -> None:
    accounts.add_user(session, passwords, "alice", "pw")
    alice = _p(session, "alice")
    off = Policy(make_settings())
    on = Policy(make_settings(personal_namespaces=True))
    assert off.allowed_actions(session, alice, "alice/app") == set()
    assert on.allowed_actions(session, alice, "alice/app") == set(ALL)
    assert on.allowed_actions(session, alice, "alice") == set()
    assert on.allowed_actions(session, alice, "alicex/app") == set()


def test_robot_tokens(session: Session, passwords: Passwords, make_settings: Settings) -> None:
    policy = Policy(make_settings())
    accounts.add_user(session, passwords, "alice", "pw")
    accounts.grant(session, "user", "alice", "team/*", "pull,push,delete")
    info, secret = robots.create_robot(session, "alice", "ci", [("team/app", "pull,push")])
    assert info.login == "alice+ci" and secret.startswith("ldg_")
    stored = robots.list_robots(session)[0]
    assert stored.scopes == (("team/app", frozenset({"pull", "push"})),)

    for login in ("alice+ci", "alice"):
        p = authenticate(session, passwords, login, secret)
        assert p is not None and p.robot_id == info.id and p.subject == "alice+ci"
    assert authenticate(session, passwords, "bob", secret) is None
    assert authenticate(session, passwords, "alice+ci", secret + "x") is None
    p = authenticate(session, passwords, "alice+ci", secret)
    assert p is not None
    assert robots.list_robots(session)[0].last_used_at is not None

    # Scoped: token scope AND owner's rights.
    got = policy.grant(session, p, [repository("team/app", *ALL), repository("team/other", "pull")])
    assert got == [repository("team/app", "pull", "push")]
    # Rules granted to the robot itself widen the owner's part, still within token scope.
    accounts.grant(session, "user", "alice", "team/*", "pull")  # no-op widening
    # Revoked and expired tokens stop working; a disabled owner disables the robot.
    robots.revoke_robot(session, "alice+ci")
    assert authenticate(session, passwords, "alice+ci", secret) is None
    _, old = robots.create_robot(
        session, "alice", "old", [("team/*", "pull")], expires_at=utcnow() - timedelta(seconds=1)
    )
    assert authenticate(session, passwords, "alice+old", old) is None
    _, live = robots.create_robot(session, "alice", "live", [("team/*", "pull")])
    assert authenticate(session, passwords, "alice+live", live) is not None
    accounts.set_disabled(session, "alice", True)
    assert authenticate(session, passwords, "alice+live", live) is None


def test_robot_rules(session: Session, passwords: Passwords, make_settings: Settings) -> None:
    policy = Policy(make_settings())
    accounts.add_user(session, passwords, "svc", "pw")
    _, secret = robots.create_robot(session, "svc", "deploy", [("*", "pull")])
    accounts.grant(session, "robot", "svc+deploy", "prod/*", "pull,push")
    p = authenticate(session, passwords, "svc+deploy", secret)
    assert p is not None
    got = policy.grant(
        session, p, [repository("prod/api", "pull", "push"), repository("dev/x", "pull")]
    )
    assert got == [repository("prod/api", "pull")]
    rules = accounts.list_rules(session)
    assert [(r.subject_type, r.subject) for r in rules] == [("robot", "svc+deploy")]
    with pytest.raises(accounts.AccountError):
        robots.create_robot(session, "svc", "deploy", [("*", "pull")])
    with pytest.raises(ValueError):
        robots.create_robot(session, "svc", "bad", [("*", "admin")])


def test_remove_robot_and_group(session: Session, passwords: Passwords) -> None:
    accounts.add_user(session, passwords, "svc", "pw")
    robots.create_robot(session, "svc", "ci", [("*", "pull")])
    accounts.grant(session, "robot", "svc+ci", "a/*", "pull")
    accounts.create_group(session, "g")
    accounts.grant(session, "group", "g", "b/*", "pull")
    robots.remove_robot(session, "svc+ci")
    accounts.remove_group(session, "g")
    session.commit()
    assert robots.list_robots(session) == []
    assert accounts.list_rules(session) == []
