"""Wrong admin tokens count as failed logins of the client address: 429 with Retry-After
once locked, as for passwords, while other addresses keep the right token working.

Clients are told apart by ``X-Forwarded-For``, which uvicorn trusts from 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from admin_support import errors_of
from conftest import ADMIN_TOKEN, GC_ENV, ONE_WORKER, READY_TIMEOUT
from support.server import RegistryServer, start_lading

USAGE = "/admin/v1/usage"
MAX_FAILURES = 5  # the default auth_throttle_max_failures
ADMIN, ADMIN_PW = "boss", "boss-password-1"
STATIC = "throttle-admin-token-5f0c2a9e1b7d4c3a8e6f"


def _get(server: RegistryServer, address: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
    return httpx.get(server.url + USAGE, headers=headers, timeout=60)


def _assert_locked(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert errors_of(answer)[0]["code"] == "TOOMANYREQUESTS"
    wait = int(answer.headers["retry-after"])
    assert 0 < wait <= 300
    # The message says it too: the CLI shows the message, not the headers.
    assert errors_of(answer)[0]["message"].endswith(f"try again in {wait} s")


def test_wrong_admin_tokens_lock_the_address_out(guarded_server: RegistryServer) -> None:
    guesser, bystander = "203.0.113.10", "203.0.113.11"
    statuses = [
        _get(guarded_server, guesser, f"guess-{n}").status_code for n in range(MAX_FAILURES)
    ]
    assert statuses == [401] * MAX_FAILURES
    _assert_locked(_get(guarded_server, guesser, "guess-5"))
    # The right token does not open a locked address (no oracle), as a right password.
    _assert_locked(_get(guarded_server, guesser, ADMIN_TOKEN))
    # Another address is not slowed by the guesser's failures.
    assert _get(guarded_server, bystander, ADMIN_TOKEN).status_code == 200
    unproxied = httpx.get(
        guarded_server.url + USAGE, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    )
    assert unproxied.status_code == 200


def test_the_right_admin_token_resets_its_count(guarded_server: RegistryServer) -> None:
    """As a successful login does: occasional typos never add up to a lock-out."""
    address = "203.0.113.20"
    for _ in range(3):
        for n in range(MAX_FAILURES - 1):
            assert _get(guarded_server, address, f"typo-{n}").status_code == 401
        assert _get(guarded_server, address, ADMIN_TOKEN).status_code == 200


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
        tmp_path_factory.mktemp("admin-throttle"),
        env=env,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
        ready_statuses=(401,),
    )
    yield server
    server.stop()


def test_token_mode_counts_every_unknown_bearer(token_server: RegistryServer) -> None:
    """With token auth on, a bearer value that is no admin token, no robot secret and no
    registry token is a guess too, whatever it looks like; a registry token is a client's
    mistake and is not counted, so it never locks the address's logins out."""
    address = "198.51.100.30"
    registry_token = httpx.get(
        f"{token_server.url}/token",
        params={"service": "lading", "scope": "repository:x/y:pull"},
        auth=(ADMIN, ADMIN_PW),
        timeout=60,
    ).json()["token"]
    for _ in range(MAX_FAILURES + 2):
        assert _get(token_server, address, registry_token).status_code == 401
    assert _get(token_server, address, STATIC).status_code == 200

    guesses = ["ldg_" + "x" * 43, "a.b.c", "plain-guess", "ldg_unknown", "another-guess"]
    assert [_get(token_server, address, g).status_code for g in guesses] == [401] * MAX_FAILURES
    _assert_locked(_get(token_server, address, STATIC))
    # The lock is the admin token's: the address's password logins are not locked by it.
    basic = httpx.get(
        token_server.url + USAGE,
        auth=(ADMIN, ADMIN_PW),
        headers={"X-Forwarded-For": address},
        timeout=60,
    )
    assert basic.status_code == 200
    assert _get(token_server, "198.51.100.31", STATIC).status_code == 200
