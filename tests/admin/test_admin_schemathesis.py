"""Property-based requests from the served OpenAPI document: never a 5xx, and answers
that match the documented schemas. Bounded: a few examples per operation."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from admin_support import push_image, push_index
from conftest import GC_ENV, ONE_WORKER, READY_TIMEOUT
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from support.server import RegistryServer, start_lading


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Its own server: generated requests may apply retention policies to everything."""
    server = start_lading(
        tmp_path_factory.mktemp("admin-fuzz"),
        env=GC_ENV,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
    )
    with server.client() as client:
        amd = push_image(client, "fuzz/app", "v1", 1)
        arm = push_image(client, "fuzz/app", None, 2, arch="arm64")
        push_index(client, "fuzz/app", "multi", [amd, arm])
    yield server
    server.stop()


CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


ADMIN, ADMIN_PW = "fuzz-admin", "fuzz-admin-password-1"
# Generated requests carry the admin token: a Basic login per request would spend
# most of the test in argon2, which the login tests cover.
FUZZ_ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def token_fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Token auth on: every generated request carries admin credentials."""
    env = {
        **GC_ENV,
        "LADING_ADMIN_TOKEN": FUZZ_ADMIN_TOKEN,
        "LADING_AUTH_MODE": "token",
        "LADING_AUTH_ADMIN_USERNAME": ADMIN,
        "LADING_AUTH_ADMIN_PASSWORD": ADMIN_PW,
    }
    server = start_lading(
        tmp_path_factory.mktemp("admin-fuzz-token"), env=env, args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT, ready_statuses=(401,),
    )  # fmt: skip
    yield server
    server.stop()


def test_admin_api_never_fails_on_generated_requests(fuzz_server: RegistryServer) -> None:
    assert fuzz(fuzz_server, {})


def test_admin_api_with_token_auth_never_fails(token_fuzz_server: RegistryServer) -> None:
    statuses = fuzz(token_fuzz_server, {"Authorization": f"Bearer {FUZZ_ADMIN_TOKEN}"})
    # The credentials were taken: most answers got past authentication.
    assert statuses.count(401) < len(statuses) // 10, statuses
    url = f"{token_fuzz_server.url}/admin/v1/usage"
    with httpx.Client(timeout=30) as client:
        assert client.get(url, auth=(ADMIN, ADMIN_PW)).status_code == 200
        basic = base64.b64encode(f"{ADMIN}:{ADMIN_PW}".encode()).decode()
        assert client.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200
        token = client.get(
            f"{token_fuzz_server.url}/token",
            params={"service": "lading", "scope": "repository:fuzz/app:pull,push"},
            auth=(ADMIN, ADMIN_PW),
        ).json()["token"]
        # A registry pull/push token is not an admin credential.
        assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def fuzz(server: RegistryServer, headers: dict[str, str]) -> list[int]:
    """Runs every operation's generated cases; returns the statuses seen."""
    statuses: list[int] = []
    schema = schemathesis.openapi.from_url(f"{server.url}/admin/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            statuses.append(response.status_code)
            case.validate_response(response, checks=CHECKS)

        run()
    return statuses


def test_fuzzing_left_the_server_healthy(fuzz_server: RegistryServer) -> None:
    assert httpx.get(f"{fuzz_server.url}/admin/v1/usage", timeout=30).status_code == 200
