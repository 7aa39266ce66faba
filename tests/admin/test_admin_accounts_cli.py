"""``lading user-remote|group-remote|perm-remote|robot-remote|public-remote`` as subprocesses
against a token-auth server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from accounts_support import ADMIN, ADMIN_PW, granted, start_token_server, unique
from support.server import RegistryServer, lading_command


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    started = start_token_server(tmp_path_factory)
    yield started
    started.stop()


BOSS_ENV = {"LADING_USERNAME": ADMIN, "LADING_PASSWORD": ADMIN_PW}


def lading(
    server: RegistryServer,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    full_env.update(BOSS_ENV if env is None else env)
    result = subprocess.run(
        [*lading_command(), *args, "--url", server.url],
        capture_output=True, text=True, env=full_env, timeout=120,
        input=stdin if stdin is not None else "",
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(server: RegistryServer, *args: str, **kwargs: Any) -> Any:
    return json.loads(lading(server, *args, "-o", "json", **kwargs).stdout)


def test_account_commands_round_trip(server: RegistryServer) -> None:
    user, password = unique("cli"), "cli-password-1"
    added = as_json(server, "user-remote", "add", user, "--password-stdin", stdin=password + "\n")
    assert added["username"] == user and added["admin"] is False
    dup = lading(server, "user-remote", "add", user, "--password-stdin", stdin=password + "\n",
                 check=False)  # fmt: skip
    assert dup.returncode == 1 and "409" in dup.stderr
    assert user in lading(server, "user-remote", "ls").stdout
    team = unique("cli-team")
    lading(server, "group-remote", "add", team)
    members = as_json(server, "group-remote", "member-add", team, user)
    assert members["members"] == [user]
    rule = as_json(server, "perm-remote", "grant", "group", team, f"{team}/*", "pull,push")
    assert rule["actions"] == ["pull", "push"]
    listed = as_json(server, "perm-remote", "ls", "--subject-type", "group", "--subject", team)
    assert [r["id"] for r in listed] == [rule["id"]]
    with server.client() as client:
        assert granted(client, (user, password), f"repository:{team}/x:pull,push") == {
            "pull",
            "push",
        }

    robot = as_json(server, "robot-remote", "create", ADMIN, unique("cli-ops"), "--admin",
                    "--scope", "ops/*:pull", "--expires-days", "7")  # fmt: skip
    assert robot["admin"] is True and robot["secret"].startswith("ldg_")
    # The admin robot's secret works as the CLI's admin token.
    robot_env = {"LADING_ADMIN_TOKEN": robot["secret"]}
    users = as_json(server, "user-remote", "ls", env=robot_env)
    assert user in [u["username"] for u in users]
    shown = as_json(server, "robot-remote", "show", robot["login"], env=robot_env)
    assert "secret" not in shown and shown["scopes"][0]["repository_pattern"] == "ops/*"
    plain = as_json(server, "robot-remote", "create", user, "pusher", "--scope", f"{team}/*:push")
    refused = lading(server, "user-remote", "ls", env={"LADING_ADMIN_TOKEN": plain["secret"]},
                     check=False)  # fmt: skip
    assert refused.returncode == 1 and "403" in refused.stderr

    pattern = f"{unique('cli-pub')}/*"
    lading(server, "public-remote", "add", pattern)
    assert pattern in lading(server, "public-remote", "ls").stdout
    lading(server, "public-remote", "rm", pattern)
    missing = lading(server, "public-remote", "rm", pattern, check=False)
    assert missing.returncode == 1 and "not a stored public pattern" in missing.stderr

    revoked = as_json(server, "robot-remote", "revoke", robot["login"])
    assert revoked["state"] == "revoked"
    denied = lading(server, "user-remote", "ls", env=robot_env, check=False)
    assert denied.returncode == 1 and "401" in denied.stderr
    lading(server, "robot-remote", "rm", robot["login"])
    lading(server, "perm-remote", "revoke", str(rule["id"]))
    lading(server, "group-remote", "member-rm", team, user)
    lading(server, "group-remote", "rm", team)
    new_password = "cli-password-2"
    lading(server, "user-remote", "passwd", user, "--password-stdin", stdin=new_password + "\n")
    assert as_json(server, "user-remote", "admin", user)["admin"] is True
    assert as_json(server, "user-remote", "disable", user)["disabled"] is True
    unconfirmed = lading(server, "user-remote", "rm", user, check=False)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    lading(server, "user-remote", "rm", user, "--yes")
    gone = lading(server, "user-remote", "show", user, check=False)
    assert gone.returncode == 1 and "404" in gone.stderr

    log = as_json(server, "audit", "--limit", "200")
    actions = {(e["action"], e["actor"]) for e in log}
    assert ("user.create", ADMIN) in actions and ("robot.revoke", ADMIN) in actions
    assert {"group.member.remove", "permission.delete", "robot.delete", "public.remove",
            "user.delete"} <= {a for a, _ in actions}  # fmt: skip
