"""Blob reads and deletes: HEAD/GET headers, byte ranges, repository isolation, DELETE."""

from __future__ import annotations

import httpx
import pytest
from v2client import digest_of, expect_error, push_blob, random_bytes, unique

DATA = random_bytes(1000, seed=1)


@pytest.fixture
def pushed(client: httpx.Client, repo: str) -> str:
    return push_blob(client, repo, DATA)


def test_head_blob(client: httpx.Client, repo: str, pushed: str) -> None:
    response = client.head(f"/v2/{repo}/blobs/{pushed}")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Docker-Content-Digest"] == pushed
    assert response.content == b""


def test_get_blob(client: httpx.Client, repo: str, pushed: str) -> None:
    response = client.get(f"/v2/{repo}/blobs/{pushed}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Docker-Content-Digest"] == pushed


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-25", 975, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=900-5000", 900, 999),
    ],
)
def test_get_blob_range(
    client: httpx.Client, repo: str, pushed: str, header: str, start: int, end: int
) -> None:
    response = client.get(f"/v2/{repo}/blobs/{pushed}", headers={"Range": header})
    assert response.status_code == 206, response.text
    assert response.content == DATA[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(end - start + 1)


def test_head_blob_range(client: httpx.Client, repo: str, pushed: str) -> None:
    response = client.head(f"/v2/{repo}/blobs/{pushed}", headers={"Range": "bytes=0-99"})
    assert response.status_code == 206
    assert response.headers["Content-Length"] == "100"
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_get_blob_unsatisfiable_range(
    client: httpx.Client, repo: str, pushed: str, header: str
) -> None:
    response = client.get(f"/v2/{repo}/blobs/{pushed}", headers={"Range": header})
    assert response.status_code == 416, response.text
    assert response.headers.get("Content-Range") == f"bytes */{len(DATA)}"


# RFC 9110 section 14.2: a Range in a unit the server does not know MUST be ignored; a
# server MAY ignore any Range, so a multi-range request may get the whole blob rather than
# a 416 that claims none of its ranges overlap the blob.
@pytest.mark.parametrize("header", ["items=0-5", "bytes=0-0,5-6", "bytes=10-19, 30-39"])
def test_range_the_registry_does_not_serve_gets_the_whole_blob(
    client: httpx.Client, repo: str, pushed: str, header: str
) -> None:
    for method in ("GET", "HEAD"):
        response = client.request(method, f"/v2/{repo}/blobs/{pushed}", headers={"Range": header})
        assert response.status_code == 200, f"{method} {header}: {response.text}"
        assert "Content-Range" not in response.headers
        assert response.headers["Content-Length"] == str(len(DATA))
    assert client.get(f"/v2/{repo}/blobs/{pushed}", headers={"Range": header}).content == DATA


def test_range_unit_is_case_insensitive(client: httpx.Client, repo: str, pushed: str) -> None:
    response = client.get(f"/v2/{repo}/blobs/{pushed}", headers={"Range": "Bytes=10-19"})
    assert response.status_code == 206, response.text
    assert response.content == DATA[10:20]


@pytest.mark.parametrize(
    ("if_range", "partial"),
    [
        (None, True),
        ("same", True),
        ('"sha256:' + "0" * 64 + '"', False),
        ("weak", False),
        ("Sun, 29 Nov 2026 12:00:00 GMT", False),
    ],
)
def test_if_range(
    client: httpx.Client, repo: str, pushed: str, if_range: str | None, partial: bool
) -> None:
    """RFC 9110 section 13.1.5: Range applies only if If-Range matches the ETag (strongly);
    otherwise the whole blob is sent with 200."""
    headers = {"Range": "bytes=10-19"}
    if if_range == "same":
        if_range = f'"{pushed}"'
    elif if_range == "weak":
        if_range = f'W/"{pushed}"'
    if if_range is not None:
        headers["If-Range"] = if_range
    response = client.get(f"/v2/{repo}/blobs/{pushed}", headers=headers)
    if partial:
        assert response.status_code == 206, response.text
        assert response.content == DATA[10:20]
        assert response.headers["ETag"] == f'"{pushed}"'
    else:
        assert response.status_code == 200, response.text
        assert response.content == DATA
        assert "Content-Range" not in response.headers


def test_blob_is_not_visible_in_another_repository(
    client: httpx.Client, repo: str, pushed: str
) -> None:
    other = unique("api/other")
    push_blob(client, other, b"something else entirely")
    expect_error(client.get(f"/v2/{other}/blobs/{pushed}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{other}/blobs/{pushed}").status_code == 404
    never_pushed = unique("api/never")
    expect_error(client.get(f"/v2/{never_pushed}/blobs/{pushed}"), 404, "BLOB_UNKNOWN")


def test_unknown_blob(client: httpx.Client, repo: str, pushed: str) -> None:
    missing = digest_of(b"not pushed anywhere " + repo.encode())
    expect_error(client.get(f"/v2/{repo}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    response = client.head(f"/v2/{repo}/blobs/{missing}")
    assert response.status_code == 404
    assert response.content == b""


def test_delete_blob(client: httpx.Client, repo: str, pushed: str) -> None:
    other = unique("api/keeps")
    push_blob(client, other, DATA)
    response = client.delete(f"/v2/{repo}/blobs/{pushed}")
    assert response.status_code == 202, response.text
    expect_error(client.get(f"/v2/{repo}/blobs/{pushed}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{repo}/blobs/{pushed}").status_code == 404
    expect_error(client.delete(f"/v2/{repo}/blobs/{pushed}"), 404, "BLOB_UNKNOWN")
    # Deleting from one repository leaves the other's link alone.
    kept = client.get(f"/v2/{other}/blobs/{pushed}")
    assert kept.status_code == 200
    assert kept.content == DATA


def test_blob_invalid_digest(client: httpx.Client, repo: str, pushed: str) -> None:
    expect_error(client.get(f"/v2/{repo}/blobs/sha256:abc"), 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/blobs/md5:{'0' * 32}"), 400, "DIGEST_INVALID")
    upper = "sha256:" + pushed.split(":", 1)[1].upper()
    expect_error(client.get(f"/v2/{repo}/blobs/{upper}"), 400, "DIGEST_INVALID")


def test_blob_invalid_name(client: httpx.Client, pushed: str) -> None:
    expect_error(client.get(f"/v2/Bad_Name/blobs/{pushed}"), 400, "NAME_INVALID")
    expect_error(client.get(f"/v2/a--/blobs/{pushed}"), 400, "NAME_INVALID")


def test_knowing_a_digest_does_not_claim_the_blob(
    client: httpx.Client, repo: str, pushed: str
) -> None:
    """Completing an upload with another repository's digest but without its bytes fails."""
    other = unique("api/claimer")
    response = client.post(f"/v2/{other}/blobs/uploads/", params={"digest": pushed})
    expect_error(response, 400, "DIGEST_INVALID")
    started = client.post(f"/v2/{other}/blobs/uploads/")
    assert started.status_code == 202
    url = httpx.URL(started.request.url.join(started.headers["Location"]))
    expect_error(client.put(url.copy_merge_params({"digest": pushed})), 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{other}/blobs/{pushed}"), 404, "BLOB_UNKNOWN")
