"""/admin/v1/accounts on a token-auth server: users, groups, permission rules, robots and
public patterns, with their audit entries and their effect on registry tokens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from accounts_support import (
    ADMIN,
    BOSS,
    audit_actions,
    granted,
    registry_token,
    start_token_server,
    unique,
)
from admin_support import errors_of
from support.server import RegistryServer

API = "/admin/v1/accounts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    started = start_token_server(tmp_path_factory)
    yield started
    started.stop()


@pytest.fixture
def client(server: RegistryServer) -> Iterator[httpx.Client]:
    with server.client(timeout=60.0) as http_client:
        yield http_client


def create_user(client: httpx.Client, name: str, password: str, admin: bool = False) -> None:
    body = {"username": name, "password": password, "admin": admin}
    response = client.post(f"{API}/users", json=body, auth=BOSS)
    assert response.status_code == 201, response.text


def test_user_lifecycle_is_audited(client: httpx.Client) -> None:
    name, password = unique("dev"), "first-password-1"
    created = client.post(f"{API}/users", json={"username": name, "password": password},
                          auth=BOSS)  # fmt: skip
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["username"] == name and body["admin"] is False and body["disabled"] is False
    assert "password" not in body and "password_hash" not in body
    dup = client.post(f"{API}/users", json={"username": name, "password": "x" * 10}, auth=BOSS)
    assert dup.status_code == 409 and errors_of(dup)[0]["code"] == "CONFLICT"
    extra = client.post(
        f"{API}/users", json={"username": unique("u"), "password": "x" * 10, "role": "root"},
        auth=BOSS,
    )  # fmt: skip
    assert extra.status_code == 422 and errors_of(extra)[0]["code"] == "VALIDATION_FAILED"
    short = client.post(f"{API}/users", json={"username": unique("u"), "password": "short"},
                        auth=BOSS)  # fmt: skip
    assert short.status_code == 422
    bad_name = client.post(f"{API}/users", json={"username": "Bad Name", "password": "x" * 10},
                           auth=BOSS)  # fmt: skip
    assert bad_name.status_code == 422
    listed = client.get(f"{API}/users", auth=BOSS).json()["items"]
    assert name in [u["username"] for u in listed] and ADMIN in [u["username"] for u in listed]
    assert client.get(f"{API}/users/{name}", auth=BOSS).json()["username"] == name
    assert client.get(f"{API}/users/nobody-{name}", auth=BOSS).status_code == 404
    for bad_path in ("users/bad%00name", "users/Upper", "groups/-bad%00", "robots/no-plus"):
        invalid = client.get(f"{API}/{bad_path}", auth=BOSS)
        assert invalid.status_code == 400 and errors_of(invalid)[0]["code"] == "BAD_REQUEST"

    # The new account can log in like `docker login` does.
    login = client.get("/token", params={"service": "lading", "offline_token": "true",
                                         "client_id": "docker"}, auth=(name, password))  # fmt: skip
    assert login.status_code == 200 and login.json()["token"]
    assert login.json()["refresh_token"]

    new_password = "second-password-2"
    reset = client.patch(f"{API}/users/{name}", json={"password": new_password}, auth=BOSS)
    assert reset.status_code == 200, reset.text
    assert registry_token(client, (name, password)).status_code == 401
    assert registry_token(client, (name, new_password)).status_code == 200
    empty = client.patch(f"{API}/users/{name}", json={}, auth=BOSS)
    assert empty.status_code == 422
    unknown_field = client.patch(f"{API}/users/{name}", json={"is_admin": True}, auth=BOSS)
    assert unknown_field.status_code == 422
    promoted = client.patch(f"{API}/users/{name}", json={"admin": True}, auth=BOSS).json()
    assert promoted["admin"] is True
    assert client.get("/admin/v1/usage", auth=(name, new_password)).status_code == 200
    disabled = client.patch(f"{API}/users/{name}", json={"disabled": True, "admin": False},
                            auth=BOSS).json()  # fmt: skip
    assert disabled["disabled"] is True and disabled["admin"] is False
    assert registry_token(client, (name, new_password)).status_code == 401

    assert client.delete(f"{API}/users/{name}", auth=BOSS).status_code == 204
    assert client.get(f"{API}/users/{name}", auth=BOSS).status_code == 404
    assert client.delete(f"{API}/users/{name}", auth=BOSS).status_code == 404

    created_entry = [e for e in audit_actions(client, "user.create") if e["target"] == name]
    assert created_entry and created_entry[0]["actor"] == ADMIN
    updates = [e for e in audit_actions(client, "user.update") if e["target"] == name]
    details = [e["details"] for e in reversed(updates)]
    assert details == [{"password_reset": True}, {"admin": True},
                       {"admin": False, "disabled": True}]  # fmt: skip
    assert [e for e in audit_actions(client, "user.delete") if e["target"] == name]
    for entry in created_entry + updates:
        assert new_password not in str(entry) and password not in str(entry)


def test_groups_and_rules_shape_registry_tokens(client: httpx.Client) -> None:
    user, password = unique("member"), "member-password-1"
    create_user(client, user, password)
    team = unique("Team")
    repo = f"{team.lower()}/app"
    assert client.post(f"{API}/groups", json={"name": team}, auth=BOSS).status_code == 201
    dup = client.post(f"{API}/groups", json={"name": team}, auth=BOSS)
    assert dup.status_code == 409
    assert client.post(f"{API}/groups", json={"name": "-bad"}, auth=BOSS).status_code == 422

    scope = f"repository:{repo}:pull,push,delete"
    assert granted(client, (user, password), scope) == set()
    rule = client.post(
        f"{API}/permissions",
        json={"subject_type": "group", "subject": team, "repository_pattern": f"{team.lower()}/*",
              "actions": ["pull", "push"]},
        auth=BOSS,
    )  # fmt: skip
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    assert rule.json()["actions"] == ["pull", "push"]
    again = client.post(
        f"{API}/permissions",
        json={"subject_type": "group", "subject": team, "repository_pattern": f"{team.lower()}/*",
              "actions": ["delete"]},
        auth=BOSS,
    )  # fmt: skip
    assert again.status_code == 409 and errors_of(again)[0]["detail"] == {"id": rule_id}

    added = client.put(f"{API}/groups/{team}/members/{user}", auth=BOSS)
    assert added.status_code == 200 and added.json()["members"] == [user]
    assert client.put(f"{API}/groups/{team}/members/{user}", auth=BOSS).status_code == 200
    assert client.get(f"{API}/users/{user}", auth=BOSS).json()["groups"] == [team]
    assert granted(client, (user, password), scope) == {"pull", "push"}
    assert client.put(f"{API}/groups/{team}/members/ghost-{user}", auth=BOSS).status_code == 404

    direct = client.post(
        f"{API}/permissions",
        json={"subject_type": "user", "subject": user, "repository_pattern": repo,
              "actions": ["delete"]},
        auth=BOSS,
    )  # fmt: skip
    assert direct.status_code == 201
    assert granted(client, (user, password), scope) == {"pull", "push", "delete"}
    mine = client.get(f"{API}/permissions", params={"subject_type": "user", "subject": user},
                      auth=BOSS).json()["items"]  # fmt: skip
    assert [r["id"] for r in mine] == [direct.json()["id"]]

    for bad in (
        {"subject_type": "user", "subject": f"ghost-{user}", "repository_pattern": "a/*",
         "actions": ["pull"]},
        {"subject_type": "robot", "subject": f"{user}+none", "repository_pattern": "a/*",
         "actions": ["pull"]},
    ):  # fmt: skip
        assert client.post(f"{API}/permissions", json=bad, auth=BOSS).status_code == 404
    for bad in (
        {"subject_type": "user", "subject": user, "repository_pattern": "a/*",
         "actions": ["admin"]},
        {"subject_type": "user", "subject": user, "repository_pattern": "A B",
         "actions": ["pull"]},
        {"subject_type": "team", "subject": user, "repository_pattern": "a/*",
         "actions": ["pull"]},
        {"subject_type": "user", "subject": user, "repository_pattern": "a/*",
         "actions": ["pull"], "extra": 1},
    ):  # fmt: skip
        assert client.post(f"{API}/permissions", json=bad, auth=BOSS).status_code == 422

    removed = client.delete(f"{API}/groups/{team}/members/{user}", auth=BOSS)
    assert removed.status_code == 200 and removed.json()["members"] == []
    assert client.delete(f"{API}/groups/{team}/members/{user}", auth=BOSS).status_code == 404
    assert granted(client, (user, password), scope) == {"delete"}
    assert client.delete(f"{API}/permissions/{direct.json()['id']}", auth=BOSS).status_code == 204
    assert client.delete(f"{API}/permissions/{direct.json()['id']}", auth=BOSS).status_code == 404
    assert client.delete(f"{API}/permissions/abc", auth=BOSS).status_code == 400
    assert granted(client, (user, password), scope) == set()
    assert client.delete(f"{API}/groups/{team}", auth=BOSS).status_code == 204
    assert client.get(f"{API}/groups/{team}", auth=BOSS).status_code == 404
    # The group's rule went with it.
    assert rule_id not in [
        r["id"] for r in client.get(f"{API}/permissions", auth=BOSS).json()["items"]
    ]

    for action, target in (
        ("group.create", team),
        ("group.member.add", team),
        ("group.member.remove", team),
        ("group.delete", team),
        ("permission.create", f"group:{team} {team.lower()}/*"),
        ("permission.delete", f"user:{user} {repo}"),
    ):
        assert [e for e in audit_actions(client, action) if e["target"] == target], action


def test_robot_tokens(client: httpx.Client) -> None:
    owner, password = unique("owner"), "owner-password-1"
    create_user(client, owner, password)
    client.post(f"{API}/permissions", json={"subject_type": "user", "subject": owner,
                "repository_pattern": "ci/*", "actions": ["pull", "push", "delete"]},
                auth=BOSS)  # fmt: skip
    body = {"owner": owner, "name": "ci", "expires_in_days": 30,
            "scopes": [{"repository_pattern": "ci/*", "actions": ["pull", "push"]}]}  # fmt: skip
    created = client.post(f"{API}/robots", json=body, auth=BOSS)
    assert created.status_code == 201, created.text
    robot = created.json()
    login, secret = robot["login"], robot["secret"]
    assert login == f"{owner}+ci" and secret.startswith("ldg_")
    assert robot["state"] == "active" and robot["admin"] is False and robot["expires_at"]
    assert client.post(f"{API}/robots", json=body, auth=BOSS).status_code == 409
    shown = client.get(f"{API}/robots/{login}", auth=BOSS)
    listed = client.get(f"{API}/robots", params={"owner": owner}, auth=BOSS)
    assert secret not in shown.text and secret not in listed.text
    assert [r["login"] for r in listed.json()["items"]] == [login]
    assert client.get(f"{API}/users/{owner}", auth=BOSS).json()["robots"] == [login]

    # docker login as the robot: its scope AND its owner's rights.
    assert granted(client, (login, secret), "repository:ci/app:pull,push,delete") == {
        "pull",
        "push",
    }
    assert granted(client, (login, secret), "repository:other/app:pull") == set()

    for bad, status in (
        ({**body, "owner": f"ghost-{owner}"}, 404),
        ({**body, "name": "admin-bot", "admin": True}, 409),  # the owner is not an admin
        ({"owner": owner, "name": "empty"}, 422),
        ({**body, "name": "x", "expires_in_days": 0}, 422),
        ({**body, "name": "x", "secret": "ldg_mine"}, 422),
        ({**body, "name": "Upper"}, 422),
    ):
        response = client.post(f"{API}/robots", json=bad, auth=BOSS)
        assert response.status_code == status, (bad, response.text)

    revoked = client.post(f"{API}/robots/{login}/revoke", auth=BOSS)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert client.post(f"{API}/robots/{login}/revoke", auth=BOSS).status_code == 200
    assert registry_token(client, (login, secret)).status_code == 401
    assert client.delete(f"{API}/robots/{login}", auth=BOSS).status_code == 204
    assert client.get(f"{API}/robots/{login}", auth=BOSS).status_code == 404
    assert client.delete(f"{API}/robots/{login}", auth=BOSS).status_code == 404

    created_entry = [e for e in audit_actions(client, "robot.create") if e["target"] == login]
    assert created_entry[0]["details"]["scopes"] == ["ci/*:pull,push"]
    assert secret not in str(created_entry)
    assert len([e for e in audit_actions(client, "robot.revoke") if e["target"] == login]) == 1
    assert [e for e in audit_actions(client, "robot.delete") if e["target"] == login]


def test_public_patterns(client: httpx.Client) -> None:
    pattern = f"{unique('pub')}/*"
    name = pattern.replace("*", "app")
    assert granted(client, None, f"repository:{name}:pull") == set()
    added = client.post(f"{API}/public-repositories", json={"pattern": pattern}, auth=BOSS)
    assert added.status_code == 201, added.text
    pattern_id = added.json()["id"]
    dup = client.post(f"{API}/public-repositories", json={"pattern": pattern}, auth=BOSS)
    assert dup.status_code == 409
    bad = client.post(f"{API}/public-repositories", json={"pattern": "Pub/*"}, auth=BOSS)
    assert bad.status_code == 422
    listed = client.get(f"{API}/public-repositories", auth=BOSS).json()
    assert {"id": pattern_id, "pattern": pattern} in listed["items"]
    assert listed["configured"] == []
    # Anonymous callers may now pull (and only pull).
    assert granted(client, None, f"repository:{name}:pull,push") == {"pull"}
    removed = client.delete(f"{API}/public-repositories/{pattern_id}", auth=BOSS)
    assert removed.status_code == 204
    assert client.delete(f"{API}/public-repositories/{pattern_id}", auth=BOSS).status_code == 404
    assert granted(client, None, f"repository:{name}:pull") == set()
    for action in ("public.add", "public.remove"):
        assert [e for e in audit_actions(client, action) if e["target"] == pattern]


def test_the_last_admin_stays(client: httpx.Client) -> None:
    others = [
        u["username"]
        for u in client.get(f"{API}/users", auth=BOSS).json()["items"]
        if u["admin"] and not u["disabled"] and u["username"] != ADMIN
    ]
    for other in others:
        assert client.patch(f"{API}/users/{other}", json={"admin": False},
                            auth=BOSS).status_code == 200  # fmt: skip
    for method, body in (("PATCH", {"admin": False}), ("PATCH", {"disabled": True}),
                         ("DELETE", None)):  # fmt: skip
        response = client.request(method, f"{API}/users/{ADMIN}", json=body, auth=BOSS)
        assert response.status_code == 409, response.text
        assert "last enabled admin" in errors_of(response)[0]["message"]
    assert client.get(f"{API}/users/{ADMIN}", auth=BOSS).json()["admin"] is True


def test_admin_scoped_robots_use_the_admin_api(
    server: RegistryServer, client: httpx.Client
) -> None:
    boss_bot = client.post(f"{API}/robots", json={"owner": ADMIN, "name": unique("ops"),
                           "admin": True}, auth=BOSS)  # fmt: skip
    assert boss_bot.status_code == 201, boss_bot.text
    login, secret = boss_bot.json()["login"], boss_bot.json()["secret"]
    assert boss_bot.json()["admin"] is True and boss_bot.json()["scopes"] == []
    plain_bot = client.post(f"{API}/robots", json={"owner": ADMIN, "name": unique("pusher"),
                            "scopes": [{"repository_pattern": "*", "actions": ["pull", "push"]}]},
                            auth=BOSS).json()  # fmt: skip
    user, password = unique("plain"), "plain-password-1"
    create_user(client, user, password)

    url = "/admin/v1/usage"
    assert client.get(url, auth=(login, secret)).status_code == 200
    assert client.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    # The robot administers: it creates an account, and the log names the robot.
    made = unique("made-by-bot")
    by_bot = client.post(f"{API}/users", json={"username": made, "password": "x" * 12},
                         headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert by_bot.status_code == 201
    entry = [e for e in audit_actions(client, "user.create") if e["target"] == made]
    assert entry[0]["actor"] == login

    refused = client.get(url, auth=(plain_bot["login"], plain_bot["secret"]))
    assert refused.status_code == 403 and errors_of(refused)[0]["code"] == "DENIED"
    bearer = client.get(url, headers={"Authorization": f"Bearer {plain_bot['secret']}"})
    assert bearer.status_code == 403
    assert client.get(url, auth=(user, password)).status_code == 403
    missing = client.get(url)
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    forged = client.get(url, headers={"Authorization": f"Bearer {secret}x"})
    assert forged.status_code == 401
    # A registry pull/push token is refused, even one minted for the admin robot itself.
    token = registry_token(client, (login, secret), "repository:x/y:pull").json()["token"]
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    boss_token = registry_token(client, BOSS, "repository:x/y:pull,push").json()["token"]
    assert client.get(url, headers={"Authorization": f"Bearer {boss_token}"}).status_code == 401

    # The admin scope never outlives the owner's admin rights, nor a revocation.
    owner2, pw2 = unique("admin2"), "admin2-password-1"
    create_user(client, owner2, pw2, admin=True)
    bot2 = client.post(f"{API}/robots", json={"owner": owner2, "name": "ops", "admin": True},
                       auth=BOSS).json()  # fmt: skip
    assert client.get(url, auth=(bot2["login"], bot2["secret"])).status_code == 200
    client.patch(f"{API}/users/{owner2}", json={"admin": False}, auth=BOSS)
    assert client.get(url, auth=(bot2["login"], bot2["secret"])).status_code == 403
    client.post(f"{API}/robots/{login}/revoke", auth=BOSS)
    assert client.get(url, auth=(login, secret)).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 401
