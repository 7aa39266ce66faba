"""Fixtures of the admin suite: ``lading serve`` subprocesses with collection on demand.

The servers run without the background GC worker and with no review delay, so a
triggered pass frees exactly what has become unreferenced.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.server import RegistryServer, start_lading

GC_ENV = {"LADING_GC_INTERVAL_SECONDS": "0", "LADING_GC_REVIEW_DELAY": "0"}
ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"
# On a loaded 2-core machine uvicorn's supervisor can restart slow-starting workers for a
# while; give servers time, and one worker where several processes prove nothing.
READY_TIMEOUT = 180.0
ONE_WORKER = ["--workers", "1"]


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Make ``from conftest import ...`` in this directory's modules find this file.

    Every conftest.py outside a package is imported as ``conftest``; when one pytest runs
    several suites, ``sys.modules["conftest"]`` is whichever was loaded last. pytest
    registers each conftest under its path, and calls this hook only for nodes below here.
    """
    if isinstance(collector, pytest.Module):
        sys.modules["conftest"] = collector.config.pluginmanager.get_plugin(str(Path(__file__)))


@pytest.fixture(scope="session")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_lading(
        tmp_path_factory.mktemp("admin"),
        env=GC_ENV,
        args=["--workers", "2"],
        ready_timeout=READY_TIMEOUT,
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A server whose admin API wants ``LADING_ADMIN_TOKEN``."""
    env = {**GC_ENV, "LADING_ADMIN_TOKEN": ADMIN_TOKEN}
    server = start_lading(
        tmp_path_factory.mktemp("admin-guarded"),
        env=env,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
    )
    yield server
    server.stop()


@pytest.fixture
def cleanup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A server of its own: storage totals are measured on it."""
    server = start_lading(
        tmp_path_factory.mktemp("admin-cleanup"),
        env=GC_ENV,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
    )
    yield server
    server.stop()


@pytest.fixture
def client(admin_server: RegistryServer) -> Iterator[httpx.Client]:
    with admin_server.client(timeout=60.0) as http_client:
        yield http_client


@pytest.fixture
def repo() -> str:
    return f"admin/t-{uuid.uuid4().hex[:10]}"
