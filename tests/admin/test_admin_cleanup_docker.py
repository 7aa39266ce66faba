"""End-to-end cleanup with a real Docker engine: push 12 tags with ``docker push``, preview
keep-newest-5 and apply it with the CLI, collect garbage; usage shrinks by exactly the
predicted bytes, storage by those less the manifests' (in the database), and ``docker pull``
still gets the five kept tags."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import httpx
import pytest
from admin_support import storage_bytes
from support.dockerd import DockerEngine
from support.server import RegistryServer, lading_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]
A = "/admin/v1"
REPO = "team/docker-cleanup"
TAGS = 12


def cli(server: RegistryServer, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [*lading_command(), *args, "--url", server.url, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def build_and_push(
    engine: DockerEngine, base: str, server: RegistryServer, workdir: Path, count: int
) -> list[str]:
    refs = []
    for i in range(count):
        ctx = workdir / f"build-{i}"
        ctx.mkdir()
        (ctx / "payload.bin").write_bytes(random.Random(i).randbytes(64 * 1024))
        (ctx / "Dockerfile").write_text(
            f'FROM {base}\nCOPY payload.bin /payload-{i}.bin\nLABEL build="{i}"\nCMD ["/bin/sh"]\n'
        )
        ref = f"{server.host_port}/{REPO}:build-{i:02d}"
        engine.run("build", "--network=none", "-q", "-t", ref, str(ctx))
        engine.run("push", ref)
        refs.append(ref)
    return refs


def test_docker_pushed_tags_cleanup(
    cleanup_server: RegistryServer,
    docker_engine: DockerEngine,
    docker_base_image: str,
    tmp_path: Path,
) -> None:
    # 12 builds: enough to keep some and delete more than it keeps; each costs a build
    # and a push (30 of them took 94 s, on each of the two database passes).
    refs = build_and_push(docker_engine, docker_base_image, cleanup_server, tmp_path, TAGS)
    kept, doomed = refs[TAGS - 5 :], refs[: TAGS - 5]
    with cleanup_server.client(timeout=120) as client:
        tags = client.get(f"{A}/repositories/{REPO}/-/tags", params={"limit": 100}).json()
        assert len(tags["items"]) == TAGS
        assert all(t["platforms"] == ["linux/amd64"] for t in tags["items"]), tags
        before_usage = client.get(f"{A}/usage").json()["total_bytes"]
        before_disk = storage_bytes(cleanup_server.data_dir)
        # Manifests are freed in the database, not in storage.
        manifest_bytes = sum(
            int(
                client.head(f"/v2/{REPO}/manifests/{ref.rsplit(':', 1)[1]}").headers[
                    "content-length"
                ]
            )
            for ref in doomed
        )

        policy = ["--repo-pattern", "team/*", "--keep-newest", "5"]
        plan = cli(cleanup_server, "retention", "preview", *policy)
        assert plan["tags"] == len(doomed) and plan["manifests"] == len(doomed)
        expected = plan["bytes_freed"]
        assert isinstance(expected, int) and expected > len(doomed) * 64 * 1024
        applied = cli(cleanup_server, "retention", "apply", *policy, "--yes")
        assert applied["bytes_freed"] == expected
        run = cli(cleanup_server, "gc-remote", "run")
        assert run["status"] == "ok"

        after_usage = client.get(f"{A}/usage").json()["total_bytes"]
        assert before_usage - after_usage == expected
        assert before_disk - storage_bytes(cleanup_server.data_dir) == expected - manifest_bytes

    for ref in refs:
        docker_engine.run("image", "rm", ref, check=False)
    for ref in kept:
        docker_engine.run("pull", ref)
        labels = docker_engine.out("image", "inspect", "--format", "{{.Config.Labels.build}}", ref)
        assert labels == str(int(ref.rsplit("-", 1)[1]))
    gone = docker_engine.run("pull", doomed[0], check=False)
    assert gone.returncode != 0
    assert httpx.get(f"{cleanup_server.url}/v2/{REPO}/tags/list").json()["tags"] == sorted(
        r.rsplit(":", 1)[1] for r in kept
    )
