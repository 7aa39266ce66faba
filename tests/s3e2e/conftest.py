"""End-to-end tests of Lading on S3: real ``lading serve`` processes on real S3 servers.

Each test gets a fresh bucket on a session-wide moto or rclone server (rclone with
``--disable-multipart-streaming``, as tests/s3servers.py recommends for resumed uploads);
``s3`` is parametrized over both. Servers that a test stops and restarts are started by
the test itself (``own_s3``). Under ``CI=true`` a missing tool fails instead of skipping.
Every ``lading`` process follows ``LADING_TEST_DATABASE`` (``support.server.lading_env``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from s3e2e_support import SERVERS, S3Target
from s3servers import S3Server, ToolMissing, fresh_bucket, start_moto, start_rclone
from support.server import RegistryFactory, RegistryServer
from support.tools import unavailable


def _start(start: Callable[[], S3Server]) -> S3Server:
    try:
        return start()
    except ToolMissing as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    server = _start(start_moto)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rclone_s3() -> Iterator[S3Server]:
    server = _start(start_rclone)
    yield server
    server.stop()


@pytest.fixture(params=SERVERS)
def s3(request: pytest.FixtureRequest) -> Iterator[S3Target]:
    server: S3Server = request.getfixturevalue(f"{request.param}_s3")
    target = S3Target(server, fresh_bucket(server))
    yield target
    server.delete_bucket(target.bucket)


@pytest.fixture
def s3_lading(lading_factory: RegistryFactory, s3: S3Target) -> Callable[..., RegistryServer]:
    """``s3_lading(**LADING_env_overrides)`` starts ``lading serve`` on the test's bucket."""

    def start(**overrides: str) -> RegistryServer:
        return lading_factory(env=s3.env(**overrides))

    return start


@pytest.fixture(params=SERVERS)
def own_s3(request: pytest.FixtureRequest) -> Iterator[S3Target]:
    """A private S3 server (the test may stop and relaunch it) with one bucket."""
    server = _start(start_moto if request.param == "moto" else start_rclone)
    try:
        yield S3Target(server, fresh_bucket(server))
    finally:
        server.stop()
