"""The shipped Dockerfile and docker-compose.yml, run on a real Docker engine.

Base images are built locally (debootstrap, cached in ``LADING_TEST_CACHE``); the build
context is a copy of the shipped files plus a host-built wheelhouse, so nothing is fetched
from a public registry. ``LADING_TEST_DOCKER_HOST`` points the tests at an existing daemon
with container networking; otherwise they start their own.

    CI=true .venv/bin/pytest tests/deploy -m docker
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import deploy_stack as stack
import httpx
import pytest
from deploy_client import RegistryClient
from support.dockerd import DockerEngine, _server_version
from support.tools import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

ADMIN = "admin"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    host = os.environ.get("LADING_TEST_DOCKER_HOST", "").strip()
    if host:
        config = tmp_path_factory.mktemp("docker-cli")
        yield DockerEngine(host, config, server_version=_server_version(host, config) or "")
        return
    with stack.networked_dockerd() as own:
        yield own


@pytest.fixture(scope="module")
def compose(
    engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[stack.Compose]:
    started = time.monotonic()
    stack.ensure_base_images(engine)
    stack.log(f"base images ready in {time.monotonic() - started:.0f}s")
    work = tmp_path_factory.mktemp("compose")
    compose_file = stack.build_context(work / "ctx")
    override = work / "ctx" / "test-override.yml"
    override.write_text(
        'version: "3.8"\nservices:\n  lading:\n    build:\n      args:\n        PIP_NO_INDEX: "1"\n'
    )
    port = free_port()
    password = secrets.token_urlsafe(18)
    env_file = work / "lading.env"
    env_file.write_text(
        f"POSTGRES_PASSWORD={secrets.token_urlsafe(18)}\n"
        "LADING_AUTH_MODE=token\n"
        f"LADING_AUTH_REALM=http://127.0.0.1:{port}/token\n"
        "LADING_AUTH_SERVICE=lading\n"
        f"LADING_AUTH_ADMIN_USERNAME={ADMIN}\n"
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
        runner("down", "-v", "--remove-orphans", timeout=300)
        engine.run("image", "rm", "-f", f"{project}/lading:test", check=False)


def _up(
    compose: stack.Compose, *args: str, replicas: int = 1, profiles: tuple[str, ...] = ()
) -> list[str]:
    started = time.monotonic()
    selected = [part for name in profiles for part in ("--profile", name)]
    compose(*selected, "up", "-d", *args, timeout=600)
    ids = compose.wait_healthy("lading", count=replicas)
    stack.log(f"stack healthy in {time.monotonic() - started:.0f}s")
    return ids


def _tiny_image(engine: DockerEngine, tmp: Path, ref: str) -> bytes:
    payload = secrets.token_bytes(256 * 1024)
    ctx = tmp / "image"
    ctx.mkdir(exist_ok=True)
    (ctx / "payload").write_bytes(payload)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    engine.run("build", "-q", "-t", ref, str(ctx))
    return payload


def test_compose_stack_push_pull_persist(
    compose: stack.Compose, engine: DockerEngine, tmp_path: Path
) -> None:
    ids = _up(compose)
    port = compose.published_port(ids[0])
    host = f"127.0.0.1:{port}"
    url = f"http://{host}"
    password = compose.env["ADMIN_PASSWORD"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["checks"] == {"database": "ok", "storage": "ok"}

    # The container runs as the unprivileged user, with the JSON logs the image enables.
    assert engine.out("exec", ids[0], "id", "-u") == "10001"
    client = RegistryClient(url, ADMIN, password)
    auth_on = client.auth_enabled()

    _docker_login(engine, host, password)

    ref = f"{host}/team/hello"
    payload = _tiny_image(engine, tmp_path, f"{ref}:v1")
    engine.run("tag", f"{ref}:v1", f"{ref}:v2")
    started = time.monotonic()
    engine.run("push", f"{ref}:v1", timeout=300)
    engine.run("push", f"{ref}:v2", timeout=300)
    stack.log(f"pushed in {time.monotonic() - started:.1f}s (auth {'on' if auth_on else 'off'})")
    assert client.tags("team/hello") == ["v1", "v2"]

    # Admin cleanup through the registry API: delete one tag.
    client.delete_tag("team/hello", "v2")
    assert client.tags("team/hello") == ["v1"]

    engine.run("image", "rm", f"{ref}:v1", f"{ref}:v2")
    engine.run("pull", f"{ref}:v1", timeout=300)
    assert _payload_of(engine, f"{ref}:v1", tmp_path) == payload

    logs = compose("logs", "--no-color", "lading")
    json_lines = [line.split("|", 1)[-1].strip() for line in logs.splitlines() if "|" in line]
    access = [json.loads(line) for line in json_lines if line.startswith("{")]
    assert any(
        entry.get("logger") == "lading.access" and entry.get("request_id") for entry in access
    )

    # down / up (containers removed) and an image "upgrade" (rebuilt, recreated): data stays.
    compose("down", timeout=300)
    ids = _up(compose)
    assert client.tags("team/hello") == ["v1"]
    compose("build", "lading", timeout=900)
    ids = _up(compose, "--force-recreate")
    assert client.tags("team/hello") == ["v1"]
    engine.run("image", "rm", f"{ref}:v1")
    engine.run("pull", f"{ref}:v1", timeout=300)
    assert _payload_of(engine, f"{ref}:v1", tmp_path) == payload
    metrics = httpx.get(f"{url}/metrics").text
    assert 'lading_http_requests_total{kind="manifest"' in metrics


def test_two_replicas_share_state(compose: stack.Compose) -> None:
    """Each request of one chunked push and pull goes to the other replica."""
    compose.env["LADING_HTTP_PORT"] = ""  # ephemeral host ports: replicas must not collide
    try:
        ids = _up(compose, "--scale", "lading=2", replicas=2)
        assert len(ids) == 2
        urls = [f"http://{compose.address(cid)}:5000" for cid in ids]
        password = compose.env["ADMIN_PASSWORD"]
        # One token cache for both: a token issued by one replica must work on the other.
        shared: dict[str, str] = {}
        clients = [RegistryClient(u, ADMIN, password, tokens=shared, own_realm=True) for u in urls]
        data = secrets.token_bytes(3 * 1024 * 1024 + 123)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        chunks = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
        served_by = RegistryClient.alternating_upload(clients, "scale/app", chunks, digest)
        assert len(set(served_by)) == 2
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        config_digest = clients[1].push_blob("scale/app", config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest,
                    "size": len(data),
                }
            ],
        }
        clients[0].put_manifest("scale/app", "v1", manifest)
        assert clients[1].get_manifest("scale/app", "v1")["layers"][0]["digest"] == digest
        assert clients[1].get_blob("scale/app", digest) == data
        assert clients[0].get_blob("scale/app", digest) == data
        assert clients[0].tags("scale/app") == clients[1].tags("scale/app") == ["v1"]
    finally:
        compose.env["LADING_HTTP_PORT"] = str(free_port())


def test_replicas_on_the_s3_profile(compose: stack.Compose, tmp_path: Path) -> None:
    """``--profile s3``: blobs in the rclone S3 store, two replicas alternating."""
    env_file = Path(compose.env["LADING_ENV_FILE"])
    s3_env = tmp_path / "lading-s3.env"
    s3_env.write_text(
        env_file.read_text()
        + "LADING_STORAGE=s3\n"
        + "LADING_S3_ENDPOINT_URL=http://s3:9000\n"
        + "LADING_S3_BUCKET=lading\n"
        + "LADING_S3_ACCESS_KEY=lading\n"
        + f"LADING_S3_SECRET_KEY={secrets.token_urlsafe(16)}\n"
    )
    saved = dict(compose.env)
    compose.env.update(
        {
            "LADING_ENV_FILE": str(s3_env),
            "LADING_HTTP_PORT": "",
            "LADING_S3_IMAGE": f"{compose.project}/s3:test",
        }
    )
    try:
        compose("--profile", "s3", "build", "s3", timeout=900)
        ids = _up(compose, "--scale", "lading=2", replicas=2, profiles=("s3",))
        urls = [f"http://{compose.address(cid)}:5000" for cid in ids]
        shared: dict[str, str] = {}
        password = compose.env["ADMIN_PASSWORD"]
        clients = [RegistryClient(u, ADMIN, password, tokens=shared, own_realm=True) for u in urls]
        data = secrets.token_bytes(2 * 1024 * 1024 + 7)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        chunks = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
        served_by = RegistryClient.alternating_upload(clients, "s3/app", chunks, digest)
        assert len(set(served_by)) == 2
        assert clients[0].get_blob("s3/app", digest) == data
        assert clients[1].get_blob("s3/app", digest) == data
        # The bytes are in the S3 store's volume, not in lading-data.
        s3_ids = compose.container_ids("s3")
        listing = compose.engine.out("exec", s3_ids[0], "find", "/data/lading", "-type", "f")
        assert listing, "no object in the S3 bucket"
    finally:
        compose("--profile", "s3", "down", timeout=300)
        compose.env.clear()
        compose.env.update(saved)
        compose.engine.run("image", "rm", "-f", f"{compose.project}/s3:test", check=False)


def _docker_login(engine: DockerEngine, host: str, password: str) -> None:
    import subprocess

    result = subprocess.run(
        ["docker", "login", "-u", ADMIN, "--password-stdin", host],
        input=password,
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Login Succeeded" in result.stdout


def _payload_of(engine: DockerEngine, ref: str, tmp: Path) -> bytes:
    container = engine.out("create", ref, "/payload")
    try:
        target = tmp / f"payload-{secrets.token_hex(4)}"
        engine.run("cp", f"{container}:/payload", str(target))
        return target.read_bytes()
    finally:
        engine.run("rm", container, check=False)
