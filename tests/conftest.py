"""Fixtures shared by all of Lading's tests.

Registries
    ``registry_factory`` / ``session_registry_factory`` start registries on demand
    (``factory(env=..., args=..., kind=...)``); ``registry`` and ``session_registry`` are one
    ready server each. They follow ``LADING_TEST_TARGET`` (``lading``, the default, or
    ``reference`` for CNCF distribution); ``lading_factory`` and ``lading_server`` always run
    ``lading serve``. Each server is a real subprocess on a free port with a temporary data
    directory, ready once ``GET /v2/`` answers 200, and stopped by PID at teardown.

Database
    Lading servers use SQLite in their data directory, or with ``LADING_TEST_DATABASE=postgres``
    a fresh database of a PostgreSQL cluster the tests start (``support.postgres``). Other
    ``lading`` subprocesses take ``support.server.lading_env(data_dir)`` to reach the same
    database as the server on ``data_dir``. scripts/test says which suites run on which.

Docker
    ``docker_engine`` is the daemon at ``DOCKER_HOST`` if it answers, else a private dockerd
    for the session. ``docker_base_image`` is a busybox image made with ``docker import``.

Under ``CI=true`` a missing tool fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.dockerd import DockerEngine
from support.dockerd import docker_engine as _docker_engine
from support.images import import_base_image
from support.server import Kind, RegistryFactory, RegistryServer, target_kind


@pytest.fixture(scope="session")
def registry_target() -> Kind:
    """``lading`` or ``reference``, from ``LADING_TEST_TARGET``."""
    return target_kind()


def _dir_maker(factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    return lambda kind: factory.mktemp(f"{kind}-")


@pytest.fixture
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory, registry_target: Kind
) -> Iterator[RegistryFactory]:
    factory = RegistryFactory(_dir_maker(tmp_path_factory), registry_target)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def session_registry_factory(
    tmp_path_factory: pytest.TempPathFactory, registry_target: Kind
) -> Iterator[RegistryFactory]:
    factory = RegistryFactory(_dir_maker(tmp_path_factory), registry_target)
    yield factory
    factory.close()


@pytest.fixture
def lading_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFactory]:
    factory = RegistryFactory(_dir_maker(tmp_path_factory), "lading")
    yield factory
    factory.close()


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> RegistryServer:
    return registry_factory()


@pytest.fixture(scope="session")
def session_registry(session_registry_factory: RegistryFactory) -> RegistryServer:
    return session_registry_factory()


@pytest.fixture
def lading_server(lading_factory: RegistryFactory) -> RegistryServer:
    return lading_factory()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    with _docker_engine(tmp_path_factory.mktemp("docker")) as engine:
        yield engine


@pytest.fixture(scope="session")
def docker_base_image(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``lading-e2e/busybox:base``, imported from a busybox-static root filesystem."""
    tag = "lading-e2e/busybox:base"
    import_base_image(docker_engine, tag, tmp_path_factory.mktemp("base-image"))
    return tag
