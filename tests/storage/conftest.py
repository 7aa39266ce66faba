"""Drivers under test: filesystem, S3 on moto, S3 on rclone (real servers over HTTP).

Every ``driver`` (and every ``bucket`` of the S3-only tests, on the ``server``
they are parametrized over) is fresh, and teardown asserts the test left
nothing behind. The drivers have no metadata database, so scripts/test
runs this suite once (not again with ``LADING_TEST_DATABASE=postgres``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3servers import (
    S3Server,
    ToolMissing,
    ci_requires_tools,
    fresh_bucket,
    s3_driver_for,
    start_moto,
    start_rclone,
)

from storage.driver import Driver
from storage.filesystem import FilesystemDriver


def _server(start: Callable[[], S3Server]) -> Iterator[S3Server]:
    try:
        server = start()
    except ToolMissing as exc:
        if ci_requires_tools():
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    yield from _server(start_moto)


@pytest.fixture(scope="session")
def rclone_server() -> Iterator[S3Server]:
    yield from _server(start_rclone)


@pytest.fixture(scope="session")
def rclone_streaming_server() -> Iterator[S3Server]:
    yield from _server(lambda: start_rclone(streaming=True))


def _files_under(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()]


@contextlib.contextmanager
def _checked_bucket(server: S3Server) -> Iterator[str]:
    """A fresh bucket; afterwards it is removed and must have been left empty."""
    bucket = fresh_bucket(server)
    yield bucket
    leftovers = server.leftovers(bucket)
    server.delete_bucket(bucket)
    assert leftovers == [], "test left objects or uploads behind"


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn, for the S3-only tests."""
    found: S3Server = request.getfixturevalue(f"{request.param}_server")
    return found


@pytest.fixture
def bucket(server: S3Server) -> Iterator[str]:
    with _checked_bucket(server) as name:
        yield name


@pytest.fixture(params=["filesystem", "s3-moto", "s3-rclone"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    if request.param == "filesystem":
        root = tmp_path / "store"
        fs = FilesystemDriver(root)
        fs.check()
        yield fs
        assert _files_under(root) == [], "test left files behind"
        return
    server: S3Server = request.getfixturevalue(
        "moto_server" if request.param == "s3-moto" else "rclone_server"
    )
    with _checked_bucket(server) as bucket:
        s3 = s3_driver_for(server, bucket)
        s3.check()
        yield s3
