"""Property-based requests from the served OpenAPI document: never a 5xx, and answers
that match the documented schemas. Bounded: a few examples per operation."""

from __future__ import annotations

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


def test_admin_api_never_fails_on_generated_requests(fuzz_server: RegistryServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/admin/v1/openapi.json")
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
            response = case.call(base_url=fuzz_server.url, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()


def test_fuzzing_left_the_server_healthy(fuzz_server: RegistryServer) -> None:
    assert httpx.get(f"{fuzz_server.url}/admin/v1/usage", timeout=30).status_code == 200
