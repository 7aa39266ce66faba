"""Sessions that exist only in the reference POST answered with (Lading records no row
until a PATCH stores bytes): ending one must still end it for good, and references
the server never issued are unknown. CNCF distribution, whose upload URL carries its
state too, meets the same expectations except that it answers a changed reference with
BLOB_UPLOAD_INVALID."""

from __future__ import annotations

import httpx
import pytest
from v2client import (
    EMPTY_DIGEST,
    digest_of,
    expect_error,
    finish_upload,
    patch_chunk,
    push_blob,
    start_upload,
)


def _ended(client: httpx.Client, url: str) -> None:
    expect_error(client.get(url), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(patch_chunk(client, url, b"more", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(finish_upload(client, url, digest_of(b"x"), b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.delete(url), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("stored_before", [False, True], ids=["new-blob", "existing-blob"])
def test_a_whole_blob_put_ends_its_session(
    client: httpx.Client, repo: str, stored_before: bool
) -> None:
    data = f"one layer, stored before: {stored_before}".encode()
    if stored_before:
        push_blob(client, repo, data)
    url = start_upload(client, repo)
    response = finish_upload(client, url, digest_of(data), data)
    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data
    _ended(client, url)


def test_an_empty_session_cancelled(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    assert client.delete(url).status_code == 204
    _ended(client, url)


def test_an_empty_session_completed_without_a_body(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    response = finish_upload(client, url, EMPTY_DIGEST)
    assert response.status_code == 201, response.text
    blob = client.get(f"/v2/{repo}/blobs/{EMPTY_DIGEST}")
    assert (blob.status_code, blob.content) == (200, b"")
    _ended(client, url)


def test_a_changed_reference_is_unknown(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    path = httpx.URL(url).path
    last = path[-1]
    changed = url.replace(path, path[:-1] + ("0" if last != "0" else "1"))
    expect_error(client.get(changed), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(finish_upload(client, changed, EMPTY_DIGEST), 404, "BLOB_UPLOAD_UNKNOWN")
    for made_up in ("f" * 64, "0" * 64):
        made_up_url = f"/v2/{repo}/blobs/uploads/{made_up}"
        expect_error(client.get(made_up_url), 404, "BLOB_UPLOAD_UNKNOWN")
        expect_error(patch_chunk(client, made_up_url, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.get(url).status_code == 204
