"""Fixtures of the HTTP API suite: one ``lading serve --workers 2`` for the whole session.

The server comes from the shared ``session_registry_factory`` (tests/conftest.py), which runs
it as a real subprocess on a free port with a temporary data directory, waits for
``GET /v2/`` to answer 200 and stops it by PID at the end of the session. Two workers mean
consecutive requests of one client may land on different processes, so every piece of state
(upload sessions above all) must live in the shared database and storage.

``LADING_TEST_TARGET=reference`` points the suite at CNCF distribution 2.8 instead. That is
useful for checking one expectation at a time, but distribution 2.8 predates OCI 1.1 (no
referrers, unsorted tag lists, no delete by tag, no single-request POST push, router 404s for
bad names), so many tests fail there by design.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from support.server import Kind, RegistryFactory, RegistryServer

WORKERS = 2


@pytest.fixture(scope="session")
def api_server(session_registry_factory: RegistryFactory, registry_target: Kind) -> RegistryServer:
    args = ["--workers", str(WORKERS)] if registry_target == "lading" else []
    return session_registry_factory(args=args)


@pytest.fixture
def client(api_server: RegistryServer) -> Iterator[httpx.Client]:
    with api_server.client(timeout=30.0) as http_client:
        yield http_client


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A fresh repository name derived from the test's name."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"api/{base or 'test'}-{uuid.uuid4().hex[:10]}"
