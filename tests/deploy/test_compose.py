"""The shipped Dockerfile and docker-compose.yml, run on a real Docker engine.

Base images are built locally (debootstrap, cached in ``LADING_TEST_CACHE``); the build
context is a copy of the shipped files plus a host-built wheelhouse, so nothing is fetched
from a public registry. ``LADING_TEST_DOCKER_HOST`` points the tests at an existing daemon
with container networking; otherwise they start their own (fixtures: ``conftest.py``).
The TLS proxy and replicas behind it: ``test_proxy.py``.

    CI=true .venv/bin/pytest tests/deploy -m docker
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path

import deploy_stack as stack
import httpx
import pytest
from deploy_client import (
    RegistryClient,
    docker_login,
    image_manifest,
    image_with_payload,
    payload_of,
)
from support.dockerd import DockerEngine
from support.tools import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_compose_stack_push_pull_persist(
    compose: stack.Compose, engine: DockerEngine, tmp_path: Path
) -> None:
    ids = compose.up()
    port = compose.published_port(ids[0])
    host = f"127.0.0.1:{port}"
    url = f"http://{host}"
    password = compose.env["ADMIN_PASSWORD"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json()["checks"] == {"database": "ok", "storage": "ok"}

    # The container runs as the unprivileged user, with the JSON logs the image enables.
    assert engine.out("exec", ids[0], "id", "-u") == "10001"
    _image_is_lean_and_secret_free(engine, compose.env["LADING_IMAGE"], ids[0])
    client = RegistryClient(url, stack.ADMIN, password)
    auth_on = client.auth_enabled()

    login = docker_login(engine, host, stack.ADMIN, password)
    assert login.returncode == 0, login.stderr
    assert "Login Succeeded" in login.stdout

    ref = f"{host}/team/hello"
    payload = image_with_payload(engine, tmp_path, f"{ref}:v1", 256 * 1024)
    engine.run("tag", f"{ref}:v1", f"{ref}:v2")
    started = time.monotonic()
    engine.run("push", f"{ref}:v1", timeout=300)
    engine.run("push", f"{ref}:v2", timeout=300)
    stack.log(f"pushed in {time.monotonic() - started:.1f}s (auth {'on' if auth_on else 'off'})")
    assert client.tags("team/hello") == ["v1", "v2"]

    # Admin cleanup through the admin API as the env file's admin: a tag, then a GC pass.
    with httpx.Client(base_url=f"{url}/admin/v1", auth=(stack.ADMIN, password)) as admin:
        assert admin.delete("/repositories/team/hello/-/tags/v2").status_code == 200
        gc_run = admin.post("/gc/runs", json={"wait": True}, timeout=120)
        assert gc_run.status_code == 200, gc_run.text
        assert gc_run.json()["status"] == "ok"
    assert client.tags("team/hello") == ["v1"]

    engine.run("image", "rm", f"{ref}:v1", f"{ref}:v2")
    engine.run("pull", f"{ref}:v1", timeout=300)
    assert payload_of(engine, f"{ref}:v1", tmp_path) == payload

    logs = compose("logs", "--no-color", "lading")
    json_lines = [line.split("|", 1)[-1].strip() for line in logs.splitlines() if "|" in line]
    access = [json.loads(line) for line in json_lines if line.startswith("{")]
    assert any(
        entry.get("logger") == "lading.access" and entry.get("request_id") for entry in access
    )

    # down / up (containers removed) and an image "upgrade" (rebuilt, recreated): data stays.
    compose("down", timeout=300)
    ids = compose.up()
    assert client.tags("team/hello") == ["v1"]
    compose("build", "lading", timeout=900)
    ids = compose.up("--force-recreate")
    assert client.tags("team/hello") == ["v1"]
    engine.run("image", "rm", f"{ref}:v1")
    engine.run("pull", f"{ref}:v1", timeout=300)
    assert payload_of(engine, f"{ref}:v1", tmp_path) == payload
    engine.run("image", "rm", f"{ref}:v1")
    metrics = httpx.get(f"{url}/metrics").text
    assert 'lading_http_requests_total{kind="manifest"' in metrics

    # `down -v` removes the stack's volumes, and with them the data.
    project = f"label=com.docker.compose.project={compose.project}"
    assert engine.out("volume", "ls", "-q", "--filter", project)
    compose("down", "-v", timeout=300)
    assert engine.out("volume", "ls", "-q", "--filter", project) == ""
    compose.up()
    gone = client.request("GET", "/v2/team/hello/tags/list", "repository:team/hello:pull")
    assert gone.status_code == 404, gone.text


def test_two_replicas_share_state(compose: stack.Compose) -> None:
    """Each request of one chunked push and pull goes to the other replica."""
    compose.env["LADING_HTTP_PORT"] = ""  # ephemeral host ports: replicas must not collide
    try:
        ids = compose.up("--scale", "lading=2", replicas=2)
        assert len(ids) == 2
        urls = [f"http://{compose.address(cid)}:5000" for cid in ids]
        password = compose.env["ADMIN_PASSWORD"]
        # One token cache for both: a token issued by one replica must work on the other.
        shared: dict[str, str] = {}
        clients = [
            RegistryClient(u, stack.ADMIN, password, tokens=shared, own_realm=True) for u in urls
        ]
        data = secrets.token_bytes(3 * 1024 * 1024 + 123)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        chunks = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
        served_by = RegistryClient.alternating_upload(clients, "scale/app", chunks, digest)
        assert len(set(served_by)) == 2
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        clients[1].push_blob("scale/app", config)
        clients[0].put_manifest("scale/app", "v1", image_manifest(config, data))
        assert clients[1].get_manifest("scale/app", "v1")["layers"][0]["digest"] == digest
        assert clients[1].get_blob("scale/app", digest) == data
        assert clients[0].get_blob("scale/app", digest) == data
        assert clients[0].tags("scale/app") == clients[1].tags("scale/app") == ["v1"]
    finally:
        compose.env["LADING_HTTP_PORT"] = str(free_port())


SECRET_SETTINGS = {
    "LADING_AUTH_ADMIN_PASSWORD",
    "LADING_S3_ACCESS_KEY",
    "LADING_S3_SECRET_KEY",
    "LADING_ADMIN_TOKEN",
    "LADING_DATABASE_URL",
    "POSTGRES_PASSWORD",
}


def _image_is_lean_and_secret_free(engine: DockerEngine, image: str, container: str) -> None:
    """Only the venv left the builder stage; no secret is in the image; the entrypoint
    started the image's two uvicorn workers."""
    assert engine.run("exec", container, "test", "-x", "/opt/lading/bin/lading").returncode == 0
    for leftover in ("/src", "/wheels", "/usr/bin/gcc"):
        assert engine.run("exec", container, "test", "-e", leftover, check=False).returncode == 1
    env = json.loads(engine.out("image", "inspect", "-f", "{{json .Config.Env}}", image))
    assert not {entry.split("=", 1)[0] for entry in env} & SECRET_SETTINGS, env
    assert "LADING_WORKERS=2" in env
    # The build context held an env file and a TLS key with a marker (conftest): no layer of
    # the image may contain it.
    assert not _saved_image_contains(engine, image, stack.SECRET_MARKER.encode())
    # uvicorn's worker processes, seen from the host (the image has no ps).
    processes = engine.out("top", container, "-eo", "pid,args")
    workers = [line for line in processes.splitlines() if "spawn_main" in line]
    assert len(workers) == 2, processes


def _saved_image_contains(engine: DockerEngine, image: str, needle: bytes) -> bool:
    """Whether ``docker save`` of ``image`` (every layer, uncompressed tar) holds ``needle``."""
    with subprocess.Popen(
        ["docker", "save", image], stdout=subprocess.PIPE, env=engine.env()
    ) as saving:
        assert saving.stdout is not None
        tail = b""
        found = False
        while chunk := saving.stdout.read(1 << 20):
            found = found or needle in tail + chunk
            tail = chunk[-len(needle) :]
    assert saving.returncode == 0
    return found
