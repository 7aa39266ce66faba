"""Real clients against Lading on S3: the Docker engine and skopeo (moto and rclone).

Docker pulls in redirect mode (blobs fetched from presigned S3 URLs); skopeo reads
blobs through Lading itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3e2e_support import S3Target, restart_lading
from support.dockerd import DockerEngine
from support.images import (
    ImageFacts,
    build_multilayer_image,
    forget_images,
    image_exists,
    import_base_image,
    inspect_image,
    push_image,
)
from support.oci import (
    OCI_INDEX,
    IndexLayout,
    layout_blob,
    layout_tagged,
    sha256_digest,
    verify_layout_blobs,
    write_index_layout,
)
from support.server import RegistryFactory, RegistryServer
from support.tools import require_tool


@pytest.fixture(scope="module")
def built_image(
    docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageFacts]:
    base = "lading-s3e2e/base:1"
    import_base_image(docker_engine, base, tmp_path_factory.mktemp("s3-base"))
    local = "lading-s3e2e/app:build"
    build_multilayer_image(
        docker_engine, base, local, tmp_path_factory.mktemp("s3-build"), seed=4242
    )
    facts = inspect_image(docker_engine, local)
    assert len(facts.layers) >= 6, facts.layers
    # Saved so each test can bring the image back after removing it from the engine.
    archive = tmp_path_factory.mktemp("s3-image") / "image.tar"
    docker_engine.run("save", "-o", str(archive), local)
    facts.raw["_archive"] = str(archive)
    yield facts
    forget_images(docker_engine, facts.id, base)


@pytest.mark.docker
def test_docker_push_pull_and_mount(
    docker_engine: DockerEngine,
    built_image: ImageFacts,
    s3: S3Target,
    s3_lading: Callable[..., RegistryServer],
    lading_factory: RegistryFactory,
) -> None:
    server = s3_lading()
    if not image_exists(docker_engine, built_image.id):
        docker_engine.run("load", "-i", built_image.raw["_archive"])
    repo = f"{server.host_port}/s3e2e/app"
    docker_engine.run("tag", built_image.id, f"{repo}:v1")
    digest, output = push_image(docker_engine, f"{repo}:v1")
    assert output.count("Pushed") >= len(set(built_image.layers)), output

    # Another repository: Docker mounts every layer instead of uploading it.
    other = f"{server.host_port}/s3e2e/other"
    docker_engine.run("tag", built_image.id, f"{other}:v1")
    output = docker_engine.out("push", f"{other}:v1")
    assert "Pushed" not in output, output
    assert "Mounted from s3e2e/app" in output, output

    # Pull in redirect mode: every blob GET answers 307 to a presigned S3 URL, and
    # the Docker engine must fetch the layers from S3 itself.
    server.extra_env["LADING_S3_REDIRECT"] = "true"
    server = restart_lading(lading_factory, server)
    with server.client() as client:
        config = client.get(f"/v2/s3e2e/other/blobs/{built_image.id}")
        assert config.status_code == 307, config.text
        assert config.headers["Location"].startswith(s3.server.endpoint_url)
    forget_images(docker_engine, built_image.id)
    assert not image_exists(docker_engine, built_image.id)
    output = docker_engine.out("pull", f"{other}@{digest}")
    assert digest in output, output
    pulled = inspect_image(docker_engine, f"{other}@{digest}")
    assert pulled.id == built_image.id
    assert pulled.layers == built_image.layers
    # Every layer is whole: docker save reads them all back.
    archive = server.data_dir / "pulled.tar"
    docker_engine.run("save", "-o", str(archive), f"{other}@{digest}")
    forget_images(docker_engine, built_image.id)
    assert s3.upload_leftovers() == []


POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


def _skopeo(workdir: Path, *args: str) -> str:
    """Run skopeo with a private policy and an empty auth file (no developer credentials)."""
    binary = require_tool("skopeo", "skopeo")
    policy = workdir / "policy.json"
    policy.write_text(json.dumps(POLICY))
    auth = workdir / "auth.json"
    auth.write_text('{"auths": {}}')
    cmd = [binary, "--policy", str(policy), *args]
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    detail = f"{' '.join(cmd)}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    assert result.returncode == 0, detail
    return result.stdout


def _copy_all(workdir: Path, source: str, dest: str) -> None:
    _skopeo(
        workdir, "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", source, dest
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> IndexLayout:
    return write_index_layout(tmp_path_factory.mktemp("s3-oci") / "layout", "multi", seed=9)


def test_skopeo_index_round_trip(
    layout: IndexLayout, s3: S3Target, s3_lading: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    server = s3_lading()
    remote = f"docker://{server.host_port}/s3e2e/multi"
    _copy_all(tmp_path, f"oci:{layout.root}:multi", f"{remote}:1")

    with server.client() as client:
        response = client.get("/v2/s3e2e/multi/manifests/1", headers={"Accept": OCI_INDEX})
        assert response.status_code == 200
        assert response.content == layout.index_bytes
        assert response.headers["Docker-Content-Digest"] == layout.index_digest
        for image in layout.images:
            child = client.get(
                f"/v2/s3e2e/multi/manifests/{image.manifest_digest}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert child.status_code == 200
            assert sha256_digest(child.content) == image.manifest_digest

    out = tmp_path / "oci-out"
    _copy_all(tmp_path, f"{remote}:1", f"oci:{out}:copied")
    assert layout_tagged(out, "copied")["digest"] == layout.index_digest
    wanted = {layout.index_digest, *layout.manifest_digests, *layout.blob_digests}
    assert wanted <= verify_layout_blobs(out)
    for digest in wanted:
        assert layout_blob(out, digest) == layout_blob(layout.root, digest)
    assert s3.upload_leftovers() == []
