"""Helpers of the admin suite: push small images over the v2 API and call the admin API."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import httpx
from support.blob_push import push_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pushed:
    repo: str
    tag: str | None
    digest: str
    manifest_size: int
    config_digest: str
    config_size: int
    layers: tuple[tuple[str, int], ...]

    @property
    def total_size(self) -> int:
        return self.manifest_size + self.config_size + sum(size for _, size in self.layers)


def image_config(seed: int, arch: str = "amd64") -> dict[str, Any]:
    return {
        "created": "2026-01-02T03:04:05Z",
        "author": "lading tests",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", f"SEED={seed}"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hello"],
            "Labels": {"org.example.seed": str(seed)},
            "WorkingDir": "/app",
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": "2026-01-02T03:04:05Z", "created_by": f"seed {seed}"}],
    }


def push_image(
    client: httpx.Client,
    repo: str,
    tag: str | None,
    seed: int,
    *,
    layer_sizes: tuple[int, ...] = (4096, 2048),
    shared_layer: bytes | None = None,
    arch: str = "amd64",
) -> Pushed:
    rng = random.Random(seed)
    layers = [rng.randbytes(size) for size in layer_sizes]
    if shared_layer is not None:
        layers.insert(0, shared_layer)
    config = json.dumps(image_config(seed, arch), sort_keys=True).encode()
    config_digest = push_blob(client, repo, config)
    layer_digests = [push_blob(client, repo, layer) for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": d, "size": len(data)}
            for d, data in zip(layer_digests, layers, strict=True)
        ],
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    digest = sha256(body)
    put = client.put(
        f"/v2/{repo}/manifests/{tag or digest}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    return Pushed(
        repo,
        tag,
        digest,
        len(body),
        config_digest,
        len(config),
        tuple((d, len(data)) for d, data in zip(layer_digests, layers, strict=True)),
    )


def push_index(client: httpx.Client, repo: str, tag: str, children: list[Pushed]) -> str:
    arches = ["amd64", "arm64", "s390x", "ppc64le"]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": child.digest,
                "size": child.manifest_size,
                "platform": {"os": "linux", "architecture": arches[i]},
            }
            for i, child in enumerate(children)
        ],
    }
    body = json.dumps(index, sort_keys=True).encode()
    put = client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_INDEX}
    )
    assert put.status_code == 201, put.text
    return sha256(body)


def storage_bytes(data_dir: Any) -> int:
    """Bytes of every file under the server's storage directory: blobs (manifests are in
    the database since schema revision 0009)."""
    root = data_dir / "storage"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return list(body["errors"])
