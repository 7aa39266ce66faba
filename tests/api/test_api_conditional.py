"""Conditional GET/HEAD with If-None-Match on manifests and blobs (RFC 9110 13.1.2, 13.2.2).

The ETag of a manifest or blob is its quoted digest; a listed tag, its weak form or ``*``
answers 304 with ETag and Docker-Content-Digest and without a body or Content-Length.
"""

from __future__ import annotations

import httpx
import pytest
from support.server import RegistryServer
from v2client import (
    Image,
    expect_error,
    push_blob,
    push_image,
    push_manifest,
    random_bytes,
    raw_request,
)

OTHER = '"sha256:' + "0" * 64 + '"'
DATA = random_bytes(3000, seed=41)


def quoted(digest: str) -> str:
    return f'"{digest}"'


def matching_fields(digest: str) -> list[str]:
    """If-None-Match values that name ``digest``'s ETag."""
    etag = quoted(digest)
    return [
        etag,
        f"W/{etag}",
        "*",
        f"{OTHER}, {etag}",
        f'W/"x",{OTHER} ,  W/{etag}',
        f'"a,b", {etag}',  # a comma inside a quoted tag does not split it
        f",, {etag} ,",  # empty list elements are ignored (RFC 9110 5.6.1)
    ]


def missing_fields(digest: str) -> list[str]:
    """Values that do not match: another tag, an unquoted digest, malformed syntax."""
    etag = quoted(digest)
    return [
        OTHER,
        f"W/{OTHER}",
        "",
        digest,  # an entity-tag is quoted; distribution accepts this, RFC 9110 does not
        f"w/{etag}",  # the weak prefix is case-sensitive
        f"{digest}, {etag}",  # parsing stops at the malformed first element
        f'"{digest}',
        f"{etag}x",
        f"*{etag}",
    ]


@pytest.fixture
def image(client: httpx.Client, repo: str) -> Image:
    return push_image(client, repo, "v1", seed=40)


def assert_not_modified(response: httpx.Response, digest: str) -> None:
    assert response.status_code == 304, (response.status_code, response.text)
    assert response.headers["ETag"] == quoted(digest)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert "Content-Length" not in response.headers
    assert "Content-Type" not in response.headers
    assert response.content == b""


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("by", ["tag", "digest"])
def test_manifest_not_modified(
    client: httpx.Client, repo: str, image: Image, method: str, by: str
) -> None:
    digest = image.manifest.digest
    reference = "v1" if by == "tag" else digest
    url = f"/v2/{repo}/manifests/{reference}"
    for field in matching_fields(digest):
        response = client.request(method, url, headers={"If-None-Match": field})
        assert_not_modified(response, digest)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_manifest_served_when_the_tag_does_not_match(
    client: httpx.Client, repo: str, image: Image, method: str
) -> None:
    digest = image.manifest.digest
    for field in missing_fields(digest):
        response = client.request(
            method, f"/v2/{repo}/manifests/v1", headers={"If-None-Match": field}
        )
        assert response.status_code == 200, (field, response.status_code)
        assert response.headers["Content-Length"] == str(image.manifest.size)
        assert response.headers["ETag"] == quoted(digest)
        assert response.content == (image.manifest.data if method == "GET" else b"")


def test_repeated_if_none_match_lines_form_one_list(
    client: httpx.Client, repo: str, image: Image
) -> None:
    digest = image.manifest.digest
    lines = [("If-None-Match", OTHER), ("If-None-Match", f"W/{quoted(digest)}")]
    assert_not_modified(client.get(f"/v2/{repo}/manifests/v1", headers=lines), digest)
    lines = [("If-None-Match", OTHER), ("If-None-Match", '"sha256:1"')]
    assert client.get(f"/v2/{repo}/manifests/v1", headers=lines).status_code == 200


def test_a_moved_tag_is_served_again(client: httpx.Client, repo: str, image: Image) -> None:
    """The point of revalidating a tag: once it names another manifest, the old ETag misses."""
    old = quoted(image.manifest.digest)
    newer = push_image(client, repo, seed=42).manifest
    push_manifest(client, repo, "v1", newer)
    response = client.get(f"/v2/{repo}/manifests/v1", headers={"If-None-Match": old})
    assert response.status_code == 200
    assert response.content == newer.data
    assert response.headers["ETag"] == quoted(newer.digest)
    # The old manifest is still there by digest, and still current under its own ETag.
    by_digest = f"/v2/{repo}/manifests/{image.manifest.digest}"
    assert_not_modified(
        client.get(by_digest, headers={"If-None-Match": old}), image.manifest.digest
    )


def test_missing_manifest_is_404_whatever_the_condition(
    client: httpx.Client, repo: str, image: Image
) -> None:
    """``*`` matches only a representation that exists; existence is checked first."""
    missing = "sha256:" + "0" * 64
    for reference in ("nope", missing):
        url = f"/v2/{repo}/manifests/{reference}"
        for field in ("*", quoted(missing), quoted(image.manifest.digest)):
            headers = {"If-None-Match": field}
            expect_error(client.get(url, headers=headers), 404, "MANIFEST_UNKNOWN")
            assert client.head(url, headers=headers).status_code == 404
    other_repo = f"/v2/{repo}-other/manifests/{image.manifest.digest}"
    expect_error(client.get(other_repo, headers={"If-None-Match": "*"}), 404)


def test_not_modified_on_the_wire(api_server: RegistryServer, repo: str, image: Image) -> None:
    """A raw connection sees no body bytes and no Content-Length (not even 0) on a 304."""
    digest = image.manifest.digest
    for target in (f"/v2/{repo}/manifests/v1", f"/v2/{repo}/blobs/{image.config.digest}"):
        for method in ("GET", "HEAD"):
            response = raw_request(api_server.url, method, target, headers={"If-None-Match": "*"})
            assert response.status == 304, (method, target, response.status)
            assert response.body == b""
            assert "content-length" not in response.headers
            assert "transfer-encoding" not in response.headers
    response = raw_request(
        api_server.url, "GET", f"/v2/{repo}/manifests/v1", headers={"If-None-Match": OTHER}
    )
    assert response.status == 200
    assert response.body == image.manifest.data
    assert response.headers["etag"] == quoted(digest)


@pytest.fixture
def blob(client: httpx.Client, repo: str) -> str:
    return push_blob(client, repo, DATA)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_blob_not_modified(client: httpx.Client, repo: str, blob: str, method: str) -> None:
    url = f"/v2/{repo}/blobs/{blob}"
    for field in matching_fields(blob):
        response = client.request(method, url, headers={"If-None-Match": field})
        assert_not_modified(response, blob)
        assert response.headers["Cache-Control"] == "max-age=31536000"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_blob_served_when_the_tag_does_not_match(
    client: httpx.Client, repo: str, blob: str, method: str
) -> None:
    for field in missing_fields(blob):
        response = client.request(
            method, f"/v2/{repo}/blobs/{blob}", headers={"If-None-Match": field}
        )
        assert response.status_code == 200, (field, response.status_code)
        assert response.headers["Content-Length"] == str(len(DATA))
        assert response.content == (DATA if method == "GET" else b"")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_takes_precedence_over_range(
    client: httpx.Client, repo: str, blob: str, method: str
) -> None:
    """RFC 9110 13.2.2: If-None-Match is evaluated before Range and If-Range, even for a
    range that could not be satisfied."""
    url = f"/v2/{repo}/blobs/{blob}"
    etag = quoted(blob)
    for ranged in (
        {"Range": "bytes=0-9"},
        {"Range": "bytes=0-9", "If-Range": etag},
        {"Range": "bytes=99999-"},
    ):
        response = client.request(method, url, headers={**ranged, "If-None-Match": etag})
        assert_not_modified(response, blob)
        assert "Content-Range" not in response.headers
    # A condition that does not match leaves the range to be served.
    response = client.request(method, url, headers={"Range": "bytes=0-9", "If-None-Match": OTHER})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"
    assert response.content == (DATA[:10] if method == "GET" else b"")


def test_missing_blob_is_404_whatever_the_condition(
    client: httpx.Client, repo: str, blob: str
) -> None:
    missing = "sha256:" + "1" * 64
    for field in ("*", quoted(missing)):
        headers = {"If-None-Match": field}
        expect_error(client.get(f"/v2/{repo}/blobs/{missing}", headers=headers), 404)
        assert client.head(f"/v2/{repo}/blobs/{missing}", headers=headers).status_code == 404
    # A blob of another repository does not exist here either.
    elsewhere = f"/v2/{repo}-other/blobs/{blob}"
    expect_error(client.get(elsewhere, headers={"If-None-Match": "*"}), 404, "BLOB_UNKNOWN")
