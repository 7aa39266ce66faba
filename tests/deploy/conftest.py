"""Fixtures of the deployment tests: one Docker engine and one compose project per session.

``engine`` is the daemon at ``LADING_TEST_DOCKER_HOST`` (which needs container networking)
or a private dockerd with a bridge of its own. ``compose`` runs the shipped compose file on
it with locally built base images, a token-auth env file and the Lading image built once.
Tests that need other settings use ``Compose.variant`` and leave the stack down afterwards.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import deploy_stack as stack
import pytest
from support.dockerd import DockerEngine, server_version
from support.tools import free_port


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    host = os.environ.get("LADING_TEST_DOCKER_HOST", "").strip()
    if host:
        config = tmp_path_factory.mktemp("docker-cli")
        yield DockerEngine(host, config, server_version=server_version(host, config) or "")
        return
    with stack.networked_dockerd() as own:
        yield own
        # Only on our own daemon: build stages left untagged would fill the cache.
        own.run("image", "prune", "-f", check=False, timeout=300)


@pytest.fixture(scope="session")
def compose(
    engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[stack.Compose]:
    started = time.monotonic()
    stack.ensure_base_images(engine)
    stack.log(f"base images ready in {time.monotonic() - started:.0f}s")
    work = tmp_path_factory.mktemp("compose")
    compose_file = stack.build_context(work / "ctx")
    stack.plant_secrets(work / "ctx")
    override = work / "ctx" / "test-override.yml"
    override.write_text(
        'services:\n  lading:\n    build:\n      args:\n        PIP_NO_INDEX: "1"\n'
    )
    port = free_port()
    password = secrets.token_urlsafe(18)
    env_file = work / "lading.env"
    env_file.write_text(
        f"POSTGRES_PASSWORD={secrets.token_urlsafe(18)}\n"
        "LADING_AUTH_MODE=token\n"
        f"LADING_AUTH_REALM=http://127.0.0.1:{port}/token\n"
        "LADING_AUTH_SERVICE=lading\n"
        f"LADING_AUTH_ADMIN_USERNAME={stack.ADMIN}\n"
        f"LADING_AUTH_ADMIN_PASSWORD={password}\n"
        "LADING_ACCESS_LOG=true\n"
    )
    project = f"ldt{secrets.token_hex(3)}"
    runner = stack.Compose(
        engine,
        [compose_file, override],
        project,
        {
            "LADING_ENV_FILE": str(env_file),
            "LADING_BASE_IMAGE": stack.PYTHON_IMAGE,
            "LADING_POSTGRES_IMAGE": stack.POSTGRES_IMAGE,
            "LADING_IMAGE": f"{project}/lading:test",
            "LADING_HTTP_PORT": str(port),
            "LADING_BIND_ADDRESS": "127.0.0.1",
            "ADMIN_PASSWORD": password,  # read back by the tests, not by compose
        },
    )
    started = time.monotonic()
    runner("build", "lading", timeout=1500)
    stack.log(f"lading image built in {time.monotonic() - started:.0f}s")
    try:
        yield runner
    finally:
        runner("--profile", "s3", "--profile", "tls", "down", "-v", "--remove-orphans", timeout=300)
        for image in ("lading", "s3"):
            engine.run("image", "rm", "-f", f"{project}/{image}:test", check=False)
