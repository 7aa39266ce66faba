"""Drivers under test: filesystem, S3 on moto, S3 on rclone (real servers over HTTP).

Every ``driver`` gets a fresh directory or bucket, and teardown asserts the
test left nothing behind. The drivers have no metadata database, so scripts/test
runs this suite once (not again with ``LADING_TEST_DATABASE=postgres``).
"""

from __future__ import annotations

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
    bucket = fresh_bucket(server)
    s3 = s3_driver_for(server, bucket)
    s3.check()
    yield s3
    leftovers = server.leftovers(bucket)
    server.delete_bucket(bucket)
    assert leftovers == [], "test left objects or uploads behind"
