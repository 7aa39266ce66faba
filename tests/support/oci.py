"""OCI image layouts written and read with plain Python.

``write_index_layout`` produces a two-platform image (linux/amd64 and linux/arm64) whose
image index is tagged in the layout's ``index.json``, so ``skopeo copy --all oci:DIR:TAG``
copies the whole index. Every byte is deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
PLATFORMS: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64"))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class PlatformImage:
    os: str
    architecture: str
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]


@dataclass(frozen=True)
class IndexLayout:
    """What ``write_index_layout`` wrote."""

    root: Path
    tag: str
    index_digest: str
    index_bytes: bytes
    images: tuple[PlatformImage, ...]

    @property
    def manifest_digests(self) -> set[str]:
        return {image.manifest_digest for image in self.images}

    @property
    def blob_digests(self) -> set[str]:
        """Every config and layer digest of every platform."""
        found: set[str] = set()
        for image in self.images:
            found.add(image.config_digest)
            found.update(image.layer_digests)
        return found


class _Blobs:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        digest = sha256_digest(data)
        (self.dir / digest.removeprefix("sha256:")).write_bytes(data)
        return digest


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped tar of ``files`` (fixed mtimes) and the diff id of the uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=6, mtime=0), sha256_digest(uncompressed)


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def write_index_layout(root: Path, tag: str = "multi", seed: int = 1) -> IndexLayout:
    """Write a two-platform OCI image index into the OCI layout directory ``root``."""
    rng = random.Random(seed)
    blobs = _Blobs(root)
    shared_gz, shared_diff = _layer(
        {"etc/shared.txt": f"shared by all platforms, seed {seed}\n".encode()}
    )
    shared_digest = blobs.put(shared_gz)
    images: list[PlatformImage] = []
    entries: list[dict[str, Any]] = []
    for os_name, arch in PLATFORMS:
        own_gz, own_diff = _layer(
            {
                "platform.txt": f"{os_name}/{arch} seed {seed}\n".encode(),
                "data/random.bin": rng.randbytes(96 * 1024),
            }
        )
        own_digest = blobs.put(own_gz)
        config = canonical_json(
            {
                "architecture": arch,
                "os": os_name,
                "created": "2024-01-01T00:00:00Z",
                "config": {"Cmd": ["/bin/sh"], "Labels": {"lading.test.seed": str(seed)}},
                "rootfs": {"type": "layers", "diff_ids": [shared_diff, own_diff]},
                "history": [{"created_by": "lading tests"}, {"created_by": "lading tests"}],
            }
        )
        config_digest = blobs.put(config)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": shared_digest, "size": len(shared_gz)},
                    _descriptor(OCI_LAYER_GZIP, own_gz),
                ],
                "annotations": {"org.opencontainers.image.description": f"{arch} image"},
            }
        )
        manifest_digest = blobs.put(manifest)
        entries.append(
            _descriptor(OCI_MANIFEST, manifest, platform={"architecture": arch, "os": os_name})
        )
        images.append(
            PlatformImage(
                os_name, arch, manifest_digest, config_digest, (shared_digest, own_digest)
            )
        )
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    index_digest = blobs.put(index)
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [_descriptor(OCI_INDEX, index, annotations={REF_NAME: tag})],
    }
    (root / "index.json").write_bytes(canonical_json(top))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return IndexLayout(root, tag, index_digest, index, tuple(images))


def layout_tagged(root: Path, tag: str) -> dict[str, Any]:
    """The descriptor tagged ``tag`` in the layout's ``index.json``."""
    top = json.loads((root / "index.json").read_text())
    for entry in top.get("manifests", []):
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            found: dict[str, Any] = entry
            return found
    raise KeyError(f"no {tag!r} in {root / 'index.json'}")


def layout_blob(root: Path, digest: str) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return (root / "blobs" / algorithm / encoded).read_bytes()


def verify_layout_blobs(root: Path) -> set[str]:
    """Check that every blob's content hashes to its file name; return all blob digests."""
    digests: set[str] = set()
    for path in (root / "blobs" / "sha256").iterdir():
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != path.name:
            raise AssertionError(f"blob {path} holds content with digest sha256:{actual}")
        digests.add(f"sha256:{path.name}")
    return digests
