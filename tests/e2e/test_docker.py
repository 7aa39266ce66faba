"""The real Docker engine pushes to and pulls from the registry.

A multi-layer image is built locally (no public registry involved), pushed, removed, pulled
back and compared; pushed again under a second tag and into a second repository (Docker
mounts the layers across repositories), and pulled by digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.dockerd import DockerEngine
from support.images import (
    ImageFacts,
    build_multilayer_image,
    forget_images,
    image_exists,
    import_base_image,
    push_image,
)
from support.images import inspect_image as inspect
from support.server import RegistryServer

pytestmark = pytest.mark.docker

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Pushed:
    registry: RegistryServer
    repository: str  # host:port/e2e/app
    digest: str
    facts: ImageFacts  # of the locally built image

    def ref(self, tag: str = "v1") -> str:
        return f"{self.repository}:{tag}"


@pytest.fixture(scope="module")
def base_image(
    docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A base image of this module only, so that removing it really empties the engine."""
    tag = "lading-e2e/docker-test-base:1"
    import_base_image(docker_engine, tag, tmp_path_factory.mktemp("docker-base"))
    yield tag
    forget_images(docker_engine, tag)


@pytest.fixture(scope="module")
def pushed(
    docker_engine: DockerEngine,
    base_image: str,
    session_registry: RegistryServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pushed]:
    local = "lading-e2e/app:build"
    build_multilayer_image(
        docker_engine, base_image, local, tmp_path_factory.mktemp("app-build"), seed=31337
    )
    facts = inspect(docker_engine, local)
    assert len(facts.layers) >= 6, facts.layers
    repository = f"{session_registry.host_port}/e2e/app"
    docker_engine.run("tag", local, f"{repository}:v1")
    digest, output = push_image(docker_engine, f"{repository}:v1")
    assert output.count("Pushed") >= len(set(facts.layers)), output
    yield Pushed(session_registry, repository, digest, facts)
    # Leave a shared engine (DOCKER_HOST) as we found it: drop every image we made.
    forget_images(docker_engine, facts.id)


def _check_manifest(pushed: Pushed, repo: str, reference: str) -> None:
    """The registry serves the exact pushed manifest, whose config is the image id."""
    with pushed.registry.client() as client:
        response = client.get(
            f"/v2/{repo}/manifests/{reference}",
            headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert "sha256:" + hashlib.sha256(response.content).hexdigest() == pushed.digest
    manifest = json.loads(response.content)
    assert response.headers["Content-Type"].split(";")[0] == manifest["mediaType"]
    assert manifest["config"]["digest"] == pushed.facts.id
    assert len(manifest["layers"]) == len(pushed.facts.layers)


def test_push_remove_pull_roundtrip(
    docker_engine: DockerEngine, pushed: Pushed, base_image: str
) -> None:
    _check_manifest(pushed, "e2e/app", "v1")
    # Remove everything local, base included, so the pull must fetch every layer.
    forget_images(docker_engine, pushed.facts.id, base_image)
    assert not image_exists(docker_engine, pushed.facts.id)

    output = docker_engine.out("pull", pushed.ref("v1"))
    # Other tests on a shared engine may still hold the base layer; every other
    # layer must come from the registry.
    assert output.count("Already exists") <= 1, output
    assert output.count("Pull complete") >= len(pushed.facts.layers) - 1, output
    assert pushed.digest in output, output
    pulled = inspect(docker_engine, pushed.ref("v1"))
    assert pulled.id == pushed.facts.id
    assert pulled.layers == pushed.facts.layers
    assert pulled.digest_for(pushed.repository) == pushed.digest
    assert pulled.raw["Config"]["Labels"] == pushed.facts.raw["Config"]["Labels"]


def test_second_tag_and_cross_repository_mount(docker_engine: DockerEngine, pushed: Pushed) -> None:
    if not image_exists(docker_engine, pushed.facts.id):
        docker_engine.run("pull", pushed.ref("v1"))
    host = pushed.registry.host_port

    docker_engine.run("tag", pushed.facts.id, pushed.ref("v2"))
    digest, output = push_image(docker_engine, pushed.ref("v2"))
    assert digest == pushed.digest
    assert "Pushed" not in output, f"layers uploaded again for a second tag:\n{output}"

    other = f"{host}/e2e/other"
    docker_engine.run("tag", pushed.facts.id, f"{other}:v1")
    digest, output = push_image(docker_engine, f"{other}:v1")
    assert digest == pushed.digest
    assert "Pushed" not in output, f"layers uploaded instead of mounted:\n{output}"
    assert "Mounted from e2e/app" in output, output

    _check_manifest(pushed, "e2e/app", "v2")
    _check_manifest(pushed, "e2e/other", "v1")
    _check_manifest(pushed, "e2e/other", pushed.digest)
    with pushed.registry.client() as client:
        tags = client.get("/v2/e2e/app/tags/list").json()
        assert sorted(tags["tags"]) == ["v1", "v2"]


def test_pull_by_digest(docker_engine: DockerEngine, pushed: Pushed, tmp_path: Path) -> None:
    host = pushed.registry.host_port
    forget_images(docker_engine, pushed.facts.id)
    by_digest = f"{host}/e2e/other@{pushed.digest}"
    docker_engine.run("pull", by_digest)
    pulled = inspect(docker_engine, by_digest)
    assert pulled.id == pushed.facts.id
    assert pulled.layers == pushed.facts.layers
    assert f"{host}/e2e/other@{pushed.digest}" in pulled.repo_digests
    # The pulled image is whole: docker save can read every layer back.
    archive = tmp_path / "image.tar"
    docker_engine.run("save", "-o", str(archive), by_digest)
    assert archive.stat().st_size > 3 * 1024 * 1024
