"""Drivers under test: filesystem, S3 on moto, S3 on rclone (real servers over HTTP).

Every ``driver`` gets a fresh directory or bucket, and teardown asserts the
test left nothing behind.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3servers import S3Server, ToolMissing, ci_requires_tools, start_moto, start_rclone

from storage.driver import Driver
from storage.filesystem import FilesystemDriver
from storage.s3 import S3Config, S3Driver

# The S3 minimum, so tests cross part boundaries with little data.
TEST_PART_SIZE = 5 * 1024 * 1024
_bucket_numbers = itertools.count()


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


def s3_driver_for(server: S3Server, bucket: str, **overrides: object) -> S3Driver:
    options: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "prefix": "registry/v1",
        "path_style": True,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "part_size": TEST_PART_SIZE,
    }
    options.update(overrides)
    return S3Driver(S3Config(**options))  # type: ignore[arg-type]


def fresh_bucket(server: S3Server) -> str:
    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    server.create_bucket(name)
    return name


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
