"""Repository names that contain route words (``blobs``, ``uploads``, ``manifests``, ...)."""

from __future__ import annotations

import httpx
import pytest
from v2client import (
    digest_of,
    finish_upload,
    location,
    patch_chunk,
    push_blob,
    push_image,
    random_bytes,
    start_upload,
    unique,
)

AMBIGUOUS = [
    "a/blobs/uploads",
    "x/manifests/y",
    "blobs/uploads",
    "manifests/latest",
    "r/tags/list",
    "r/referrers/sha256",
    "uploads/blobs/manifests",
]


@pytest.fixture(params=AMBIGUOUS)
def name(request: pytest.FixtureRequest) -> str:
    return f"{unique('api/paths')}/{request.param}"


def test_blob_push_and_pull(client: httpx.Client, name: str) -> None:
    data = random_bytes(5000, seed=80)
    url = start_upload(client, name)
    assert f"/v2/{name}/blobs/uploads/" in url
    first = patch_chunk(client, url, data[:2000], 0)
    assert first.status_code == 202, first.text
    status = client.get(location(first))
    assert status.status_code == 204
    done = finish_upload(client, location(first), digest_of(data), data[2000:])
    assert done.status_code == 201, done.text
    pulled = client.get(f"/v2/{name}/blobs/{digest_of(data)}")
    assert pulled.status_code == 200
    assert pulled.content == data
    assert client.head(f"/v2/{name}/blobs/{digest_of(data)}").status_code == 200
    # The shorter prefix of the name is a different, empty repository.
    prefix = name.rsplit("/", 2)[0]
    assert client.get(f"/v2/{prefix}/blobs/{digest_of(data)}").status_code == 404


def test_manifest_push_pull_tags_delete(client: httpx.Client, name: str) -> None:
    image = push_image(client, name, "latest", seed=81)
    for reference in ("latest", image.manifest.digest):
        response = client.get(f"/v2/{name}/manifests/{reference}")
        assert response.status_code == 200, response.text
        assert response.content == image.manifest.data
    tags = client.get(f"/v2/{name}/tags/list")
    assert tags.status_code == 200, tags.text
    assert tags.json() == {"name": name, "tags": ["latest"]}
    referrers = client.get(f"/v2/{name}/referrers/{image.manifest.digest}")
    assert referrers.status_code == 200, referrers.text
    assert referrers.json()["manifests"] == []
    deleted = client.delete(f"/v2/{name}/manifests/latest")
    assert deleted.status_code == 202, deleted.text
    assert client.get(f"/v2/{name}/manifests/{image.manifest.digest}").status_code == 200


def test_monolithic_and_mount(client: httpx.Client, name: str) -> None:
    digest = push_blob(client, name, b"mount source in an ambiguous repository")
    target = f"{unique('api/paths')}/m/blobs/uploads"
    response = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": name})
    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{target}/blobs/{digest}").status_code == 200
