"""Typed helpers for driving the OCI distribution API over plain HTTP in tests.

Everything here talks to a real server: ``httpx`` for ordinary requests and ``http.client``
(``raw_request``) when a request must go out byte-for-byte as written (``..`` in paths,
hand-set ``Content-Length``), which httpx would normalise.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
LINK_RE = re.compile(r'<([^>]+)>;\s*rel="next"')


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def unique(prefix: str) -> str:
    """A repository name (or name component) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_bytes(size: int, seed: int | None = None) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str = OCI_LAYER
    algorithm: str = "sha256"

    @property
    def digest(self) -> str:
        return digest_of(self.data, self.algorithm)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Manifest:
    """Exact manifest bytes with the media type they are pushed as."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass
class Image:
    manifest: Manifest
    config: Blob
    layers: list[Blob] = field(default_factory=list)


def encode(document: dict[str, Any]) -> bytes:
    """Deliberately indented JSON, so byte-identity is not satisfied by re-serialising."""
    return json.dumps(document, indent=3).encode()


def image_manifest(
    config: Blob,
    layers: list[Blob],
    *,
    media_type: str = OCI_MANIFEST,
    subject: Manifest | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Manifest:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    if subject is not None:
        document["subject"] = subject.descriptor()
    if annotations is not None:
        document["annotations"] = annotations
    return Manifest(encode(document), media_type)


def index_manifest(children: list[Manifest], *, media_type: str = OCI_INDEX) -> Manifest:
    platforms = [("amd64", "linux"), ("arm64", "linux"), ("s390x", "linux")]
    entries = [
        child.descriptor(platform={"architecture": arch, "os": os_})
        for child, (arch, os_) in zip(children, platforms * 10, strict=False)
    ]
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return Manifest(encode(document), media_type)


def expect_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert status and the ``{"errors": [{"code", "message"}]}`` body; return the code."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    return check_error_body(response.content, code)


def check_error_body(body: bytes, code: str | None = None) -> str:
    document = json.loads(body)
    assert isinstance(document, dict), document
    errors = document.get("errors")
    assert isinstance(errors, list) and errors, document
    for entry in errors:
        assert isinstance(entry, dict), document
        assert isinstance(entry.get("code"), str), document
        assert isinstance(entry.get("message"), str), document
    first: str = errors[0]["code"]
    if code is not None:
        assert first == code, f"expected error code {code}, got {document}"
    return first


def upload_path(url: str) -> str:
    """An upload URL without its query (some registries carry changing state there)."""
    return httpx.URL(url).copy_with(query=None).path


def location(response: httpx.Response) -> str:
    """The absolute URL in ``Location`` (which may be relative)."""
    value = response.headers.get("Location")
    assert value, f"{response.status_code} without Location: {response.text[:300]}"
    return str(response.request.url.join(value))


def start_upload(client: httpx.Client, repo: str) -> str:
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return location(response)


def patch_chunk(
    client: httpx.Client, url: str, data: bytes, start: int | None = None
) -> httpx.Response:
    """PATCH ``data``; with ``start``, as a ``Content-Range`` chunk."""
    headers = {"Content-Type": "application/octet-stream"}
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return client.patch(url, content=data, headers=headers)


def finish_upload(client: httpx.Client, url: str, digest: str, data: bytes = b"") -> httpx.Response:
    # Keep the Location's own query (opaque state some registries put there).
    return client.put(
        httpx.URL(url).copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def push_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    """Monolithic ``POST ?digest=`` push; returns the digest."""
    digest = digest_of(data, algorithm)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if response.status_code == 202:
        # Registries may not support single-request pushes (the spec lets them answer 202
        # with a session instead); finish through the session.
        response = finish_upload(client, location(response), digest, data)
    assert response.status_code == 201, f"push {digest}: {response.status_code} {response.text}"
    assert response.headers["Docker-Content-Digest"] == digest
    return digest


def push_blobs(client: httpx.Client, repo: str, blobs: list[Blob]) -> None:
    for blob in blobs:
        push_blob(client, repo, blob.data, blob.algorithm)


def put_manifest(
    client: httpx.Client, repo: str, reference: str, manifest: Manifest
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )


def push_manifest(client: httpx.Client, repo: str, reference: str, manifest: Manifest) -> None:
    response = put_manifest(client, repo, reference, manifest)
    assert response.status_code == 201, f"{response.status_code} {response.text}"
    assert response.headers["Docker-Content-Digest"] == manifest.digest


def push_image(
    client: httpx.Client,
    repo: str,
    tag: str | None = None,
    *,
    seed: int | None = None,
    media_type: str = OCI_MANIFEST,
    layer_count: int = 2,
) -> Image:
    """Push a small image (config + layers + manifest); tag it, else push by digest."""
    rng = random.Random(seed)
    docker = media_type == DOCKER_MANIFEST
    config = Blob(
        json.dumps({"architecture": "amd64", "os": "linux", "n": rng.random()}).encode(),
        DOCKER_CONFIG if docker else OCI_CONFIG,
    )
    layers = [
        Blob(rng.randbytes(200 + i), DOCKER_LAYER if docker else OCI_LAYER)
        for i in range(layer_count)
    ]
    push_blobs(client, repo, [config, *layers])
    manifest = image_manifest(config, layers, media_type=media_type)
    push_manifest(client, repo, tag or manifest.digest, manifest)
    return Image(manifest, config, layers)


def next_link(response: httpx.Response) -> str | None:
    """The target of ``Link: <...>; rel="next"``, resolved against the request URL."""
    header = response.headers.get("Link")
    if header is None:
        return None
    match = LINK_RE.search(header)
    assert match is not None, f"malformed Link header: {header!r}"
    return str(response.request.url.join(match.group(1)))


def walk_pages(client: httpx.Client, url: str, key: str, limit: int = 10_000) -> list[list[str]]:
    """Follow ``Link`` headers from ``url``; return the ``key`` list of every page."""
    pages: list[list[str]] = []
    current: str | None = url
    while current is not None:
        response = client.get(current)
        assert response.status_code == 200, response.text
        items = response.json()[key]
        assert isinstance(items, list)
        pages.append(items)
        current = next_link(response)
        assert len(pages) <= limit, "pagination does not terminate"
    return pages


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> RawResponse:
    """Send ``target`` exactly as given (no URL normalisation) on a fresh connection."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        all_headers = dict(headers or {})
        if body is not None and "Content-Length" not in all_headers:
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()
