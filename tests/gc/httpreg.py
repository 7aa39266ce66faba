"""A minimal registry client over HTTP for GC tests: push and verify images."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
from support.blob_push import push_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PushRejected(Exception):
    """The registry refused the manifest (e.g. a blob was collected meanwhile)."""


@dataclass(frozen=True)
class Image:
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    def manifest(self) -> bytes:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256(self.config),
                "size": len(self.config),
            },
            "layers": [
                {"mediaType": LAYER, "digest": sha256(x), "size": len(x)} for x in self.layers
            ],
        }
        return json.dumps(doc).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest())


def make_image(name: str, layers: list[bytes]) -> Image:
    return Image(json.dumps({"name": name}).encode(), tuple(layers))


def push_image(client: httpx.Client, repo: str, tag: str, image: Image, attempts: int = 5) -> None:
    """Push blobs then the manifest; retry when a blob vanished in between (grace ~0)."""
    for attempt in range(attempts):
        for blob in image.blobs:
            # Like docker: skip uploads the registry already has (the gap GC must respect).
            push_blob(client, repo, blob, skip_existing=attempt == 0)
        response = client.put(
            f"/v2/{repo}/manifests/{tag}",
            content=image.manifest(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        if response.status_code == 201:
            return
        assert response.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in response.text, (
            response.status_code,
            response.text,
        )
    raise PushRejected(f"{repo}:{tag} still refused after {attempts} attempts: {response.text}")


def verify_image(client: httpx.Client, repo: str, tag: str, image: Image) -> None:
    """The tag resolves to exactly this manifest and every blob reads back intact."""
    response = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200, (repo, tag, response.status_code, response.text)
    assert sha256(response.content) == image.digest == response.headers["Docker-Content-Digest"]
    for blob in image.blobs:
        got = client.get(f"/v2/{repo}/blobs/{sha256(blob)}")
        assert got.status_code == 200, (repo, tag, sha256(blob), got.status_code)
        assert sha256(got.content) == sha256(blob)
