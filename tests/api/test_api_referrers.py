"""``GET /v2/<name>/referrers/<digest>``: the OCI index of manifests whose subject is a digest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from v2client import (
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    Blob,
    Manifest,
    encode,
    expect_error,
    image_manifest,
    push_blobs,
    push_image,
    push_manifest,
    unique,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


@dataclass
class Graph:
    subject: Manifest
    sbom: Manifest
    signature: Manifest
    plain_image: Manifest
    index: Manifest


def artifact(
    client: httpx.Client, repo: str, subject: Manifest, artifact_type: str, note: str
) -> Manifest:
    config = Blob(EMPTY_JSON, OCI_EMPTY)
    layer = Blob(note.encode(), "application/vnd.example.payload")
    push_blobs(client, repo, [config, layer])
    manifest = image_manifest(
        config,
        [layer],
        subject=subject,
        artifact_type=artifact_type,
        annotations={"org.example.note": note},
    )
    response = client.put(
        f"/v2/{repo}/manifests/{manifest.digest}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == subject.digest
    return manifest


@pytest.fixture
def graph(client: httpx.Client, repo: str) -> Graph:
    subject = push_image(client, repo, "subject", seed=50).manifest
    sbom = artifact(client, repo, subject, SBOM, "sbom")
    signature = artifact(client, repo, subject, SIGNATURE, "signature")
    # An image with a subject but no artifactType: its config mediaType stands in.
    base = push_image(client, repo, seed=51)
    plain_image = image_manifest(base.config, base.layers, subject=subject)
    push_manifest(client, repo, plain_image.digest, plain_image)
    index_document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [base.manifest.descriptor()],
        "subject": subject.descriptor(),
        "annotations": {"org.example.kind": "index"},
    }
    index = Manifest(encode(index_document), OCI_INDEX)
    push_manifest(client, repo, index.digest, index)
    # A referrer of something else (the sbom), which must not be listed for the subject.
    artifact(client, repo, sbom, SBOM, "sbom of the sbom")
    return Graph(subject, sbom, signature, plain_image, index)


def referrers(
    client: httpx.Client, repo: str, digest: str, artifact_type: str | None = None
) -> httpx.Response:
    params = {"artifactType": artifact_type} if artifact_type is not None else None
    response = client.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return response


def by_digest(response: httpx.Response) -> dict[str, dict[str, Any]]:
    manifests: list[dict[str, Any]] = response.json()["manifests"]
    found = {entry["digest"]: entry for entry in manifests}
    assert len(found) == len(manifests), "duplicate referrers"
    return found


def test_referrers_list(client: httpx.Client, repo: str, graph: Graph) -> None:
    found = by_digest(referrers(client, repo, graph.subject.digest))
    expected = {
        graph.sbom.digest: (SBOM, {"org.example.note": "sbom"}),
        graph.signature.digest: (SIGNATURE, {"org.example.note": "signature"}),
        graph.plain_image.digest: (OCI_CONFIG, None),
        graph.index.digest: ("application/vnd.example.bundle", {"org.example.kind": "index"}),
    }
    assert set(found) == set(expected)
    manifests = {
        graph.sbom.digest: graph.sbom,
        graph.signature.digest: graph.signature,
        graph.plain_image.digest: graph.plain_image,
        graph.index.digest: graph.index,
    }
    for digest, (artifact_type, notes) in expected.items():
        entry = found[digest]
        assert entry["mediaType"] == manifests[digest].media_type
        assert entry["size"] == manifests[digest].size
        assert entry["artifactType"] == artifact_type
        assert entry.get("annotations") == notes


def test_referrers_filter(client: httpx.Client, repo: str, graph: Graph) -> None:
    response = referrers(client, repo, graph.subject.digest, SBOM)
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert list(by_digest(response)) == [graph.sbom.digest]
    response = referrers(client, repo, graph.subject.digest, "application/vnd.none")
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    assert response.json()["manifests"] == []
    unfiltered = referrers(client, repo, graph.subject.digest)
    assert "OCI-Filters-Applied" not in unfiltered.headers


def test_referrers_of_a_referrer(client: httpx.Client, repo: str, graph: Graph) -> None:
    found = by_digest(referrers(client, repo, graph.sbom.digest))
    assert len(found) == 1
    (entry,) = found.values()
    assert entry["annotations"] == {"org.example.note": "sbom of the sbom"}


def test_referrers_are_per_repository(client: httpx.Client, repo: str, graph: Graph) -> None:
    other = unique("api/referrers-other")
    push_image(client, other, "v1", seed=52)
    assert referrers(client, other, graph.subject.digest).json()["manifests"] == []


def test_deleted_referrer_disappears(client: httpx.Client, repo: str, graph: Graph) -> None:
    response = client.delete(f"/v2/{repo}/manifests/{graph.signature.digest}")
    assert response.status_code == 202, response.text
    found = by_digest(referrers(client, repo, graph.subject.digest))
    assert graph.signature.digest not in found
    assert graph.sbom.digest in found


def test_referrers_of_a_subject_never_pushed(client: httpx.Client, repo: str) -> None:
    ghost = Manifest(json.dumps({"schemaVersion": 2, "ghost": repo}).encode(), OCI_INDEX)
    push_image(client, repo, "v1", seed=53)
    listed = artifact(client, repo, ghost, SBOM, "for a ghost")
    assert list(by_digest(referrers(client, repo, ghost.digest))) == [listed.digest]


def test_referrers_of_unknown_subject(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1", seed=54)
    assert referrers(client, repo, "sha256:" + "1" * 64).json()["manifests"] == []
    never = unique("api/referrers-never")
    assert referrers(client, never, "sha256:" + "2" * 64).json()["manifests"] == []


@pytest.mark.parametrize("digest", ["sha256:short", "sha256:" + "Z" * 64, "md5:" + "0" * 32])
def test_referrers_bad_digest(client: httpx.Client, repo: str, digest: str) -> None:
    expect_error(client.get(f"/v2/{repo}/referrers/{digest}"), 400, "DIGEST_INVALID")


def test_referrers_bad_name(client: httpx.Client) -> None:
    response = client.get("/v2/Bad/referrers/sha256:" + "1" * 64)
    expect_error(response, 400, "NAME_INVALID")
