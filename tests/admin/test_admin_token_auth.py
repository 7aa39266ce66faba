"""The admin API on a token-auth server: admin accounts only; registry tokens, robots and
ordinary users are refused."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from admin_support import errors_of
from conftest import GC_ENV, ONE_WORKER, READY_TIMEOUT
from support.server import RegistryServer, lading_command, start_lading

ADMIN, ADMIN_PW = "boss", "boss-password-1"
USER, USER_PW = "dev", "dev-password-1"
STATIC = "static-admin-token-42-0123456789abcdef0123"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    env = {
        **GC_ENV,
        "LADING_AUTH_MODE": "token",
        "LADING_AUTH_ADMIN_USERNAME": ADMIN,
        "LADING_AUTH_ADMIN_PASSWORD": ADMIN_PW,
        "LADING_ADMIN_TOKEN": STATIC,
    }
    server = start_lading(
        tmp_path_factory.mktemp("admin-token"),
        env=env,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
        ready_statuses=(401,),
    )
    yield server
    server.stop()


def run_local_cli(
    server: RegistryServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.extra_env}
    marker = server.data_dir / "test-database-url"  # LADING_TEST_DATABASE=postgres
    if marker.exists():
        env["LADING_DATABASE_URL"] = marker.read_text().strip()
    result = subprocess.run(
        [*lading_command(), *args, "--data-dir", str(server.data_dir)],
        input=stdin, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    return result


def local_cli(server: RegistryServer, *args: str, stdin: str | None = None) -> str:
    result = run_local_cli(server, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_only_admin_accounts_and_the_admin_token_get_in(token_server: RegistryServer) -> None:
    local_cli(token_server, "user", "add", USER, "--password-stdin", stdin=USER_PW + "\n")
    robot = json.loads(
        local_cli(token_server, "robot", "create", ADMIN, "ci", "--scope", "*:pull,push",
                  "--output", "json")
    )  # fmt: skip
    url = f"{token_server.url}/admin/v1/usage"
    with httpx.Client(timeout=60) as client:
        missing = client.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Basic ")
        assert client.get(url, auth=(ADMIN, "wrong")).status_code == 401
        assert client.get(url, auth=(ADMIN, ADMIN_PW)).status_code == 200
        user = client.get(url, auth=(USER, USER_PW))
        assert user.status_code == 403 and errors_of(user)[0]["code"] == "DENIED"
        robot_login = client.get(url, auth=(robot["login"], robot["secret"]))
        assert robot_login.status_code == 403
        # A registry token, even the admin's, is not an admin credential.
        token = client.get(
            f"{token_server.url}/token",
            params={"service": "lading", "scope": "repository:x/y:pull,push"},
            auth=(ADMIN, ADMIN_PW),
        ).json()["token"]
        registry_token = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert registry_token.status_code == 401
        static = client.get(url, headers={"Authorization": f"Bearer {STATIC}"})
        assert static.status_code == 200
        gc = client.post(
            f"{token_server.url}/admin/v1/gc/runs", json={"wait": True}, auth=(ADMIN, ADMIN_PW)
        )
        assert gc.status_code == 200
        audit = client.get(
            f"{token_server.url}/admin/v1/audit", params={"action": "gc.trigger"},
            auth=(ADMIN, ADMIN_PW),
        ).json()["items"]  # fmt: skip
        assert audit[0]["actor"] == ADMIN


def test_local_robot_create_admin(token_server: RegistryServer) -> None:
    """`lading robot create --admin` (offline) makes a robot the admin API accepts."""
    local_cli(token_server, "user", "add", "plain-owner", "--password-stdin",
              stdin="plain-owner-pw-1\n")  # fmt: skip
    robot = json.loads(
        local_cli(token_server, "robot", "create", ADMIN, "ops", "--admin", "--output", "json")
    )
    assert robot["admin"] is True
    url = f"{token_server.url}/admin/v1/usage"
    with httpx.Client(timeout=60) as client:
        assert client.get(url, auth=(robot["login"], robot["secret"])).status_code == 200
    listed = json.loads(local_cli(token_server, "robot", "ls", "--output", "json"))
    assert {r["login"]: r["admin"] for r in listed}[robot["login"]] is True
    # A non-admin's robot cannot hold the admin scope, and nothing is created.
    refused = run_local_cli(token_server, "robot", "create", "plain-owner", "ops", "--admin")
    assert refused.returncode != 0 and "only an admin's robot" in refused.stderr
    # Neither scope nor --admin: refused with a clear message.
    empty = run_local_cli(token_server, "robot", "create", ADMIN, "nothing")
    assert empty.returncode != 0 and "at least one repository scope" in empty.stderr
    listed = json.loads(local_cli(token_server, "robot", "ls", "--output", "json"))
    assert "plain-owner+ops" not in {r["login"] for r in listed}
    assert f"{ADMIN}+nothing" not in {r["login"] for r in listed}


def test_cli_with_username_and_password(token_server: RegistryServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    env |= {"LADING_USERNAME": ADMIN, "LADING_PASSWORD": ADMIN_PW}
    result = subprocess.run(
        [*lading_command(), "gc-remote", "history", "--url", token_server.url, "-o", "json"],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    env["LADING_PASSWORD"] = "nope"
    denied = subprocess.run(
        [*lading_command(), "usage-remote", "--url", token_server.url],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert denied.returncode == 1 and "401" in denied.stderr


def test_admin_responses_are_not_stored_by_caches(token_server: RegistryServer) -> None:
    """A robot's secret is shown once, in the create answer: no cache (a proxy, the
    client's HTTP cache) may keep it, nor any other admin answer (accounts, audit)."""
    base = f"{token_server.url}/admin/v1"
    with httpx.Client(timeout=60, auth=(ADMIN, ADMIN_PW)) as client:
        created = client.post(
            f"{base}/accounts/robots", json={"owner": ADMIN, "name": "nostore", "admin": True}
        )
        assert created.status_code == 201 and created.json()["secret"]
        assert created.headers.get("cache-control") == "no-store"
        for path in ("/accounts/users", "/accounts/robots", "/audit", "/usage"):
            answer = client.get(base + path)
            assert answer.status_code == 200, path
            assert answer.headers.get("cache-control") == "no-store", path


def test_admin_password_check_does_not_hold_the_writer_lock(token_server: RegistryServer) -> None:
    """argon2 is slow on purpose: verifying an admin API Basic login under SQLite's writer
    lock let anyone stall every push with wrong passwords. The check must not wait for it."""
    lock_path = token_server.data_dir / "lading.db.writelock"
    if (token_server.data_dir / "test-database-url").exists() or not lock_path.exists():
        pytest.skip("the writer lock is SQLite's")
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a long write elsewhere
        with httpx.Client(timeout=10) as client:
            url = f"{token_server.url}/admin/v1/usage"
            assert client.get(url, auth=("nobody-here", "wrong-password")).status_code == 401
    finally:
        os.close(fd)


def test_wrong_robot_secrets_do_not_wait_for_the_writer_lock(
    token_server: RegistryServer,
) -> None:
    """A bearer robot secret is looked up without SQLite's writer lock: anyone could
    otherwise queue behind (and take turns at) the lock every push needs, with made-up
    secrets. Only a valid admin robot's request writes (its last use)."""
    lock_path = token_server.data_dir / "lading.db.writelock"
    if (token_server.data_dir / "test-database-url").exists() or not lock_path.exists():
        pytest.skip("the writer lock is SQLite's")
    robot = json.loads(
        local_cli(token_server, "robot", "create", ADMIN, "lockless", "--admin", "--output", "json")
    )
    url = f"{token_server.url}/admin/v1/usage"
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a long write elsewhere
        with httpx.Client(timeout=10) as client:
            forged = client.get(url, headers={"Authorization": "Bearer ldg_" + "x" * 43})
            assert forged.status_code == 401
    finally:
        os.close(fd)
    with httpx.Client(timeout=60) as client:
        bearer = {"Authorization": f"Bearer {robot['secret']}"}
        assert client.get(url, headers=bearer).status_code == 200
    listed = json.loads(local_cli(token_server, "robot", "ls", "--output", "json"))
    assert {r["login"]: r["last_used"] for r in listed}[robot["login"]] is not None


def test_admin_basic_logins_are_throttled(token_server: RegistryServer) -> None:
    """Wrong admin API passwords count as failed logins, as on /token: 429 + Retry-After."""
    url = f"{token_server.url}/admin/v1/usage"
    with httpx.Client(timeout=60) as client:
        # An unknown name counts like a real one (no enumeration); ADMIN stays usable.
        name = "guessed-admin"
        statuses = [client.get(url, auth=(name, f"guess-{n}")).status_code for n in range(5)]
        assert statuses == [401] * 5
        locked = client.get(url, auth=(name, "guess-5"))
        assert locked.status_code == 429 and errors_of(locked)[0]["code"] == "TOOMANYREQUESTS"
        assert int(locked.headers["retry-after"]) > 0
        # The lock is the guessed name's: the admin token has a counter of its own.
        static = client.get(url, headers={"Authorization": f"Bearer {STATIC}"})
        assert static.status_code == 200
