"""Manifest PUTs the registry must refuse (or accept, for a missing ``subject``), per the spec."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from v2client import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Image,
    Manifest,
    digest_of,
    expect_error,
    image_manifest,
    index_manifest,
    push_blobs,
    push_image,
    put_manifest,
    random_bytes,
    unique,
)

MAX_MANIFEST = 4 * 1024 * 1024


@pytest.fixture
def image(client: httpx.Client, repo: str) -> Image:
    return push_image(client, repo, "base", seed=40)


def put_raw(
    client: httpx.Client, repo: str, reference: str, body: bytes, content_type: str
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": content_type}
    )


def test_digest_reference_mismatch(client: httpx.Client, repo: str, image: Image) -> None:
    other = digest_of(b"not the manifest")
    response = put_manifest(client, repo, other, image.manifest)
    expect_error(response, 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/manifests/{other}"), 404, "MANIFEST_UNKNOWN")


def test_sha512_digest_reference(client: httpx.Client, repo: str, image: Image) -> None:
    digest = digest_of(image.manifest.data, "sha512")
    response = put_manifest(client, repo, digest, image.manifest)
    assert response.status_code == 201, response.text
    pulled = client.get(f"/v2/{repo}/manifests/{digest}")
    assert pulled.status_code == 200, pulled.text
    assert pulled.content == image.manifest.data
    wrong = digest_of(b"nope", "sha512")
    expect_error(put_manifest(client, repo, wrong, image.manifest), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("header", [OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
def test_content_type_disagrees_with_media_type(
    client: httpx.Client, repo: str, image: Image, header: str
) -> None:
    response = put_raw(client, repo, "confused", image.manifest.data, header)
    expect_error(response, 400, "MANIFEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/manifests/confused"), 404, "MANIFEST_UNKNOWN")


def test_index_content_type_on_image_body_without_media_type(
    client: httpx.Client, repo: str, image: Image
) -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "config": image.config.descriptor(),
            "layers": [layer.descriptor() for layer in image.layers],
        }
    ).encode()
    expect_error(put_raw(client, repo, "confused", body, OCI_INDEX), 400, "MANIFEST_INVALID")


def test_image_content_type_on_index_body(client: httpx.Client, repo: str, image: Image) -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": [image.manifest.descriptor()]}).encode()
    expect_error(put_raw(client, repo, "confused", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")


@pytest.mark.parametrize("extra", ["layers", "config"])
def test_index_mixing_manifests_with_image_fields(
    client: httpx.Client, repo: str, image: Image, extra: str
) -> None:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor()],
    }
    document[extra] = (
        [layer.descriptor() for layer in image.layers]
        if extra == "layers"
        else image.config.descriptor()
    )
    body = json.dumps(document).encode()
    expect_error(put_raw(client, repo, "mixed", body, OCI_INDEX), 400, "MANIFEST_INVALID")


def test_image_with_manifests_field(client: httpx.Client, repo: str, image: Image) -> None:
    document = json.loads(image.manifest.data)
    document["manifests"] = [image.manifest.descriptor()]
    body = json.dumps(document).encode()
    expect_error(put_raw(client, repo, "mixed", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b"null",
        b'{"schemaVersion": 1}',
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
        b'{"schemaVersion": 2, "config": {"mediaType": 5}, "layers": []}',
        b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "x", "size": 1}}',
        b'{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:00", "size": -1}}',
        b'{"schemaVersion": 2, "layers": "nope", "config": {}}',
        b"\xff\xfe\x00{garbage",
        '{"schemaVersion": 2, "annotations": {"k": "\u00e9"}}'.encode("latin-1"),
    ],
)
def test_invalid_manifest_body(client: httpx.Client, repo: str, body: bytes) -> None:
    expect_error(put_raw(client, repo, "bad", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")


def test_missing_layer(client: httpx.Client, repo: str, image: Image) -> None:
    ghost = Blob(random_bytes(100, seed=41))
    manifest = image_manifest(image.config, [*image.layers, ghost])
    expect_error(put_manifest(client, repo, "ghost", manifest), 400, "MANIFEST_BLOB_UNKNOWN")


def test_missing_config(client: httpx.Client, repo: str, image: Image) -> None:
    ghost = Blob(b'{"architecture": "ghost"}', OCI_CONFIG)
    manifest = image_manifest(ghost, image.layers)
    expect_error(put_manifest(client, repo, "ghost", manifest), 400, "MANIFEST_BLOB_UNKNOWN")


def test_layer_only_in_another_repository(client: httpx.Client, repo: str, image: Image) -> None:
    other = unique("api/elsewhere")
    layer = Blob(random_bytes(300, seed=42))
    push_blobs(client, other, [layer])
    manifest = image_manifest(image.config, [layer])
    expect_error(put_manifest(client, repo, "leak", manifest), 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_unknown_child(client: httpx.Client, repo: str, image: Image) -> None:
    ghost = Manifest(b'{"schemaVersion": 2, "ghost": true}', OCI_MANIFEST)
    index = index_manifest([image.manifest, ghost])
    expect_error(put_manifest(client, repo, "ghost", index), 400, "MANIFEST_BLOB_UNKNOWN")


def test_missing_subject_is_accepted(client: httpx.Client, repo: str, image: Image) -> None:
    subject = Manifest(b'{"schemaVersion": 2, "not": "pushed"}', OCI_MANIFEST)
    manifest = image_manifest(image.config, image.layers, subject=subject)
    response = put_manifest(client, repo, manifest.digest, manifest)
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == subject.digest
    pulled = client.get(f"/v2/{repo}/manifests/{manifest.digest}")
    assert pulled.content == manifest.data


def test_too_large_manifest(client: httpx.Client, repo: str, image: Image) -> None:
    document = json.loads(image.manifest.data)
    document["annotations"] = {"padding": "x" * MAX_MANIFEST}
    body = json.dumps(document).encode()
    assert len(body) > MAX_MANIFEST
    try:
        response = put_raw(client, repo, "huge", body, OCI_MANIFEST)
    except httpx.WriteError:
        # The server answered and closed before reading the body; the answer is checked below.
        pytest.fail("the server closed the connection without a readable 413")
    expect_error(response, 413)
    expect_error(client.get(f"/v2/{repo}/manifests/huge"), 404, "MANIFEST_UNKNOWN")


def test_manifest_just_under_the_limit(client: httpx.Client, repo: str, image: Image) -> None:
    document = json.loads(image.manifest.data)
    document["annotations"] = {"padding": ""}
    base = len(json.dumps(document).encode())
    document["annotations"]["padding"] = "x" * (MAX_MANIFEST - base)
    body = json.dumps(document).encode()
    assert len(body) == MAX_MANIFEST
    response = put_raw(client, repo, "big", body, OCI_MANIFEST)
    assert response.status_code == 201, response.text[:300]
    assert client.get(f"/v2/{repo}/manifests/big").content == body


@pytest.mark.parametrize("tag", ["-leading-dash", ".hidden", "x" * 129, "t@g", "a+b"])
def test_invalid_tag(client: httpx.Client, repo: str, image: Image, tag: str) -> None:
    response = put_manifest(client, repo, tag, image.manifest)
    expect_error(response, 400, "TAG_INVALID")


def test_longest_valid_tag(client: httpx.Client, repo: str, image: Image) -> None:
    tag = "T" + "a._-" * 31 + "zzz"
    assert len(tag) == 128
    response = put_manifest(client, repo, tag, image.manifest)
    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/{tag}").content == image.manifest.data


@pytest.mark.parametrize(
    "name", ["UPPER/case", "trailing-/x", "a//b", "x_", "-x", "a" * 256, "a/" * 127 + "ab"]
)
def test_invalid_name(client: httpx.Client, image: Image, name: str) -> None:
    response = put_manifest(client, name, "v1", image.manifest)
    expect_error(response, 400, "NAME_INVALID")
    expect_error(client.get(f"/v2/{name}/manifests/v1"), 400, "NAME_INVALID")


def test_layer_deleted_from_repository(client: httpx.Client, repo: str, image: Image) -> None:
    layer = Blob(random_bytes(400, seed=43))
    push_blobs(client, repo, [layer])
    assert client.delete(f"/v2/{repo}/blobs/{layer.digest}").status_code == 202
    manifest = image_manifest(image.config, [layer])
    expect_error(put_manifest(client, repo, "gone", manifest), 400, "MANIFEST_BLOB_UNKNOWN")
