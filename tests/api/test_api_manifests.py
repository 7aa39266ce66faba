"""Manifest round trips for every supported type, and tag/digest deletion semantics."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from v2client import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Manifest,
    expect_error,
    image_manifest,
    index_manifest,
    location,
    push_blobs,
    push_image,
    push_manifest,
    put_manifest,
)

SBOM_TYPE = "application/vnd.example.sbom.v1"
# What docker/containerd send when pulling.
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def build_oci_image(client: httpx.Client, repo: str) -> Manifest:
    return push_image(client, repo, seed=1).manifest


def build_docker_image(client: httpx.Client, repo: str) -> Manifest:
    return push_image(client, repo, seed=2, media_type=DOCKER_MANIFEST).manifest


def build_oci_index(client: httpx.Client, repo: str) -> Manifest:
    children = [push_image(client, repo, seed=seed).manifest for seed in (3, 4)]
    return index_manifest(children)


def build_docker_list(client: httpx.Client, repo: str) -> Manifest:
    children = [
        push_image(client, repo, seed=seed, media_type=DOCKER_MANIFEST).manifest for seed in (5, 6)
    ]
    return index_manifest(children, media_type=DOCKER_LIST)


def build_artifact(client: httpx.Client, repo: str) -> Manifest:
    subject = push_image(client, repo, seed=7).manifest
    config = Blob(EMPTY_JSON, OCI_EMPTY)
    payload = Blob(b'{"sbom": true}', "application/vnd.example.sbom.layer.v1+json")
    push_blobs(client, repo, [config, payload])
    return image_manifest(
        config,
        [payload],
        subject=subject,
        artifact_type=SBOM_TYPE,
        annotations={"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    )


BUILDERS: dict[str, Callable[[httpx.Client, str], Manifest]] = {
    "oci-image": build_oci_image,
    "oci-index": build_oci_index,
    "docker-v2": build_docker_image,
    "docker-list": build_docker_list,
    "artifact": build_artifact,
}


def assert_pulls(client: httpx.Client, repo: str, reference: str, manifest: Manifest) -> None:
    response = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
    assert response.status_code == 200, response.text
    assert response.content == manifest.data
    assert response.headers["Content-Type"] == manifest.media_type
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert response.headers["Content-Length"] == str(manifest.size)
    head = client.head(f"/v2/{repo}/manifests/{reference}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Type"] == manifest.media_type
    assert head.headers["Docker-Content-Digest"] == manifest.digest
    assert head.headers["Content-Length"] == str(manifest.size)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_manifest_round_trip_by_tag(client: httpx.Client, repo: str, kind: str) -> None:
    manifest = BUILDERS[kind](client, repo)
    response = put_manifest(client, repo, "v1", manifest)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert location(response).endswith(f"/v2/{repo}/manifests/{manifest.digest}")
    # OCI-Subject answers only a manifest with a subject.
    assert ("OCI-Subject" in response.headers) == (kind == "artifact")
    assert_pulls(client, repo, "v1", manifest)
    assert_pulls(client, repo, manifest.digest, manifest)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_manifest_round_trip_by_digest(client: httpx.Client, repo: str, kind: str) -> None:
    manifest = BUILDERS[kind](client, repo)
    response = put_manifest(client, repo, manifest.digest, manifest)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert_pulls(client, repo, manifest.digest, manifest)
    deleted = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")
    assert deleted.status_code == 202, deleted.text
    expect_error(client.get(f"/v2/{repo}/manifests/{manifest.digest}"), 404, "MANIFEST_UNKNOWN")
    assert client.head(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 404


def test_manifest_in_another_repository_is_unknown(client: httpx.Client, repo: str) -> None:
    image = push_image(client, repo, "v1", seed=10)
    other = f"{repo}-other"
    push_image(client, other, "v1", seed=11)
    response = client.get(f"/v2/{other}/manifests/{image.manifest.digest}")
    expect_error(response, 404, "MANIFEST_UNKNOWN")


def test_push_is_idempotent_and_tags_move(client: httpx.Client, repo: str) -> None:
    first = push_image(client, repo, "latest", seed=12).manifest
    push_manifest(client, repo, "latest", first)
    second = push_image(client, repo, "latest", seed=13).manifest
    assert_pulls(client, repo, "latest", second)
    # The old manifest is still there by digest after its tag moved on.
    assert_pulls(client, repo, first.digest, first)


def test_delete_by_tag_removes_only_that_tag(client: httpx.Client, repo: str) -> None:
    manifest = push_image(client, repo, "one", seed=14).manifest
    push_manifest(client, repo, "two", manifest)
    response = client.delete(f"/v2/{repo}/manifests/one")
    assert response.status_code == 202, response.text
    expect_error(client.get(f"/v2/{repo}/manifests/one"), 404, "MANIFEST_UNKNOWN")
    assert_pulls(client, repo, "two", manifest)
    assert_pulls(client, repo, manifest.digest, manifest)
    tags = client.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert tags == ["two"]
    expect_error(client.delete(f"/v2/{repo}/manifests/one"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_its_tags(client: httpx.Client, repo: str) -> None:
    manifest = push_image(client, repo, "a", seed=15).manifest
    push_manifest(client, repo, "b", manifest)
    kept = push_image(client, repo, "c", seed=16).manifest
    response = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")
    assert response.status_code == 202, response.text
    for reference in ("a", "b", manifest.digest):
        expect_error(client.get(f"/v2/{repo}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["c"]
    assert_pulls(client, repo, "c", kept)
    deleted_again = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")
    expect_error(deleted_again, 404, "MANIFEST_UNKNOWN")


def test_unknown_manifest(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "exists", seed=17)
    missing = "sha256:" + "0" * 64
    for reference in ("nope", missing):
        url = f"/v2/{repo}/manifests/{reference}"
        expect_error(client.get(url), 404, "MANIFEST_UNKNOWN")
        assert client.head(url).status_code == 404
        expect_error(client.delete(url), 404, "MANIFEST_UNKNOWN")
    expect_error(client.get("/v2/api/never-created/manifests/latest"), 404)


def test_manifest_without_media_type_field(client: httpx.Client, repo: str) -> None:
    """OCI lets ``mediaType`` be omitted; the Content-Type header then names the type."""
    image = push_image(client, repo, seed=18)
    document = json.dumps(
        {"schemaVersion": 2, "config": image.config.descriptor(), "layers": []}
    ).encode()
    manifest = Manifest(document, OCI_MANIFEST)
    response = put_manifest(client, repo, "bare", manifest)
    assert response.status_code == 201, response.text
    assert_pulls(client, repo, "bare", manifest)


def test_index_of_indexes(client: httpx.Client, repo: str) -> None:
    inner = index_manifest([push_image(client, repo, seed=19).manifest])
    push_manifest(client, repo, inner.digest, inner)
    outer = Manifest(
        b'{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"%s",'
        b'"size":%d}]}'
        % (OCI_INDEX.encode(), OCI_INDEX.encode(), inner.digest.encode(), inner.size),
        OCI_INDEX,
    )
    push_manifest(client, repo, "nested", outer)
    assert_pulls(client, repo, "nested", outer)


# BuildKit's registry cache (``--cache-to type=registry``; the default before BuildKit 0.21,
# ``image-manifest=false`` since) is an index whose entries are the cache config and layer
# blobs, not manifests. The image spec has implementations ignore entry media types they do
# not know, and distribution accepts such an index when the entries are blobs of the
# repository.
BUILDKIT_CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"


@pytest.mark.parametrize(
    ("index_type", "layer_type"),
    [
        (OCI_INDEX, "application/vnd.oci.image.layer.v1.tar+gzip"),
        (DOCKER_LIST, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ],
)
def test_index_of_blobs_as_buildkit_cache_exports(
    client: httpx.Client, repo: str, index_type: str, layer_type: str
) -> None:
    layers = [Blob(f"cache layer {i} {repo}".encode(), layer_type) for i in range(2)]
    config = Blob(b'{"layers":[],"records":[]}', BUILDKIT_CACHE_CONFIG)
    push_blobs(client, repo, [*layers, config])
    entries = [
        *(layer.descriptor(annotations={"buildkit/createdat": "2026-01-01"}) for layer in layers),
        config.descriptor(),
    ]
    cache = Manifest(
        json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode(),
        index_type,
    )
    push_manifest(client, repo, "buildcache", cache)
    assert_pulls(client, repo, "buildcache", cache)
    # An entry of an unknown type must still be content of this repository.
    missing = Blob(b"never pushed " + repo.encode(), layer_type)
    orphan = Manifest(
        json.dumps(
            {"schemaVersion": 2, "mediaType": index_type, "manifests": [missing.descriptor()]}
        ).encode(),
        index_type,
    )
    expect_error(put_manifest(client, repo, "orphan", orphan), 400, "MANIFEST_BLOB_UNKNOWN")
