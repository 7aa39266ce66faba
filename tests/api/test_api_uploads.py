"""Blob uploads: sessions, monolithic and chunked pushes, status, cancel and their errors."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from v2client import (
    EMPTY_DIGEST,
    digest_of,
    expect_error,
    finish_upload,
    location,
    patch_chunk,
    random_bytes,
    start_upload,
    unique,
    upload_path,
)

RANGE_RE = re.compile(r"(?:bytes=)?0-(\d+)")


def range_end(response: httpx.Response) -> int:
    """The last byte offset in the upload ``Range`` header."""
    value = response.headers.get("Range")
    assert value is not None, f"{response.status_code} without Range: {response.text[:300]}"
    match = RANGE_RE.fullmatch(value)
    assert match is not None, f"malformed Range header {value!r}"
    return int(match.group(1))


def assert_readable(client: httpx.Client, repo: str, digest: str, data: bytes) -> None:
    response = client.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200, response.text
    assert response.content == data
    assert response.headers["Docker-Content-Digest"] == digest


def test_start_upload(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    url = location(response)
    assert f"/v2/{repo}/blobs/uploads/" in url
    assert response.headers["Docker-Upload-UUID"]
    assert range_end(response) == 0
    status = client.get(url)
    assert status.status_code == 204
    assert status.headers["Docker-Upload-UUID"] == response.headers["Docker-Upload-UUID"]
    assert upload_path(location(status)) == upload_path(url)


def test_no_content_answers_carry_no_content_length(client: httpx.Client, repo: str) -> None:
    """RFC 9110 section 8.6: a server MUST NOT send Content-Length in a 204 response."""
    url = start_upload(client, repo)
    assert patch_chunk(client, url, b"some bytes", 0).status_code == 202
    for method in ("GET", "HEAD", "DELETE"):
        response = client.request(method, url)
        assert response.status_code == 204, f"{method}: {response.text}"
        assert "Content-Length" not in response.headers, method
        if method != "DELETE":
            assert range_end(response) == len(b"some bytes") - 1
            assert upload_path(location(response)) == upload_path(url)


def test_monolithic_post(client: httpx.Client, repo: str) -> None:
    data = random_bytes(4096, seed=2)
    digest = digest_of(data)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert location(response).endswith(f"/v2/{repo}/blobs/{digest}")
    assert_readable(client, repo, digest, data)


def test_put_whole_body(client: httpx.Client, repo: str) -> None:
    data = random_bytes(10_000, seed=3)
    url = start_upload(client, repo)
    response = finish_upload(client, url, digest_of(data), data)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest_of(data)
    assert location(response).endswith(f"/blobs/{digest_of(data)}")
    assert_readable(client, repo, digest_of(data), data)
    # The session is over once the blob is committed.
    expect_error(client.get(url), 404, "BLOB_UPLOAD_UNKNOWN")


def test_chunked_in_order(client: httpx.Client, repo: str) -> None:
    data = random_bytes(3 * 7000 + 123, seed=4)
    url = start_upload(client, repo)
    for start in range(0, len(data), 7000):
        response = patch_chunk(client, url, data[start : start + 7000], start)
        assert response.status_code == 202, response.text
        assert range_end(response) == min(start + 7000, len(data)) - 1
        assert response.headers["Docker-Upload-UUID"]
        url = location(response)
        status = client.get(url)
        assert status.status_code == 204
        assert range_end(status) == min(start + 7000, len(data)) - 1
    response = finish_upload(client, url, digest_of(data))
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)


def test_streamed_patch_without_content_range(client: httpx.Client, repo: str) -> None:
    data = random_bytes(50_000, seed=5)

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    url = start_upload(client, repo)
    # A generator body goes out with Transfer-Encoding: chunked and no Content-Length.
    response = client.patch(
        url, content=body(), headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 202, response.text
    assert range_end(response) == len(data) - 1
    second = patch_chunk(client, location(response), b"tail")
    assert second.status_code == 202, second.text
    assert range_end(second) == len(data) + 3
    whole = data + b"tail"
    response = finish_upload(client, location(second), digest_of(whole))
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(whole), whole)


def test_final_chunk_in_put(client: httpx.Client, repo: str) -> None:
    data = random_bytes(9000, seed=6)
    url = start_upload(client, repo)
    response = patch_chunk(client, url, data[:5000], 0)
    assert response.status_code == 202, response.text
    response = finish_upload(client, location(response), digest_of(data), data[5000:])
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)


def test_out_of_order_chunk_is_416_and_loses_nothing(client: httpx.Client, repo: str) -> None:
    data = random_bytes(3000, seed=7)
    url = start_upload(client, repo)
    response = patch_chunk(client, url, data[:1000], 0)
    assert response.status_code == 202, response.text
    url = location(response)
    # A gap, then an overlap: both refused, and the refusal reports the real progress.
    for wrong_start in (1500, 500, 0):
        refused = patch_chunk(client, url, data[wrong_start : wrong_start + 500], wrong_start)
        expect_error(refused, 416)
        assert range_end(refused) == 999
    status = client.get(url)
    assert status.status_code == 204
    assert range_end(status) == 999
    response = patch_chunk(client, url, data[1000:], 1000)
    assert response.status_code == 202, response.text
    assert range_end(response) == len(data) - 1
    response = finish_upload(client, location(response), digest_of(data))
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)


def test_out_of_order_first_chunk(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    refused = patch_chunk(client, url, b"x" * 10, 10)
    expect_error(refused, 416)
    # Nothing was accepted yet: the Range must still be a valid "0-N" range.
    assert range_end(refused) == 0
    response = patch_chunk(client, url, b"y" * 10, 0)
    assert response.status_code == 202, response.text
    assert range_end(response) == 9


@pytest.mark.parametrize("content_range", ["garbage", "5-2", "-1-4", "a-b"])
def test_bad_content_range(client: httpx.Client, repo: str, content_range: str) -> None:
    url = start_upload(client, repo)
    response = client.patch(url, content=b"abcd", headers={"Content-Range": content_range})
    assert 400 <= response.status_code < 500, response.text
    expect_error(response, response.status_code)


def test_put_wrong_digest(client: httpx.Client, repo: str) -> None:
    data = b"some bytes"
    url = start_upload(client, repo)
    wrong = digest_of(b"other bytes")
    expect_error(finish_upload(client, url, wrong, data), 400, "DIGEST_INVALID")
    expect_error(client.get(f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
    expect_error(client.get(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")
    # A wrong digest ends the session, as in CNCF distribution (a failed commit cancels it).
    expect_error(client.get(url), 404, "BLOB_UPLOAD_UNKNOWN")


def _put_and_hang_up(url: str, digest: str, body: bytes, declared: int) -> None:
    """A PUT that announces ``declared`` bytes but sends ``body`` and closes: a client that died."""
    target = httpx.URL(url).copy_merge_params({"digest": digest})
    head = (
        f"PUT {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port or 80), timeout=30) as sock:
        sock.sendall(head.encode() + body)


def test_final_put_cut_short_keeps_the_empty_session(client: httpx.Client, repo: str) -> None:
    """docker and containerd PUT a whole layer on the session a POST opened: if that PUT
    fails part way (here the client hangs up), its retry must find the session, not a 404."""
    data = random_bytes(6 * 1024 * 1024, seed=12)  # above SMALL_BODY: streamed, not read whole
    url = start_upload(client, repo)
    _put_and_hang_up(url, digest_of(data), data[: 5 * 1024 * 1024], len(data))
    status = client.get(url)
    assert status.status_code == 204, status.text
    assert range_end(status) == 0
    # The server notices the hang-up on its own time; until then the PUT holds the
    # session's lease and an empty PATCH (which changes nothing) answers busy.
    deadline = time.monotonic() + 15
    probe = client.patch(url, content=b"")
    while probe.status_code == 416 and time.monotonic() < deadline:
        time.sleep(0.2)
        probe = client.patch(url, content=b"")
    assert probe.status_code == 202, probe.text
    assert range_end(probe) == 0
    response = finish_upload(client, url, digest_of(data), data)
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)


def test_monolithic_post_wrong_digest(client: httpx.Client, repo: str) -> None:
    wrong = digest_of(b"not this")
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=b"this")
    expect_error(response, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404


def test_put_without_digest(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    response = client.put(url, content=b"data")
    expect_error(response, 400)


@pytest.mark.parametrize("digest", ["sha256:1234", "nope", "sha256:" + "G" * 64, "md5:" + "0" * 32])
def test_put_malformed_digest(client: httpx.Client, repo: str, digest: str) -> None:
    url = start_upload(client, repo)
    expect_error(finish_upload(client, url, digest, b"data"), 400, "DIGEST_INVALID")


def test_content_length_disagrees_with_content_range(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    response = client.patch(
        url, content=b"0123456789", headers={"Content-Range": "0-19", "Content-Length": "10"}
    )
    expect_error(response, 400, "SIZE_INVALID")


def test_cancel_upload(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    response = patch_chunk(client, url, b"partial", 0)
    assert response.status_code == 202
    url = location(response)
    cancelled = client.delete(url)
    assert cancelled.status_code == 204, cancelled.text
    expect_error(client.get(url), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(patch_chunk(client, url, b"more", 7), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(finish_upload(client, url, digest_of(b"partial")), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.delete(url), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_id_under_another_repository(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    other = unique("api/thief")
    stolen = f"/v2/{other}/blobs/uploads/{upload_id}"
    expect_error(client.get(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(patch_chunk(client, stolen, b"x", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(finish_upload(client, stolen, digest_of(b"")), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(client.delete(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
    # The real owner still has a live session.
    assert client.get(url).status_code == 204


def test_unknown_upload_id(client: httpx.Client, repo: str) -> None:
    for upload_id in ("0" * 32, "does-not-exist"):
        url = f"/v2/{repo}/blobs/uploads/{upload_id}"
        expect_error(client.get(url), 404, "BLOB_UPLOAD_UNKNOWN")
        expect_error(patch_chunk(client, url, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
        expect_error(finish_upload(client, url, digest_of(b"abc"), b"abc"), 404)


def test_zero_length_blob(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": EMPTY_DIGEST})
    assert response.status_code == 201, response.text
    head = client.head(f"/v2/{repo}/blobs/{EMPTY_DIGEST}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "0"
    get = client.get(f"/v2/{repo}/blobs/{EMPTY_DIGEST}")
    assert get.status_code == 200
    assert get.content == b""
    # Also through a session with an empty PUT.
    other = unique("api/empty")
    url = start_upload(client, other)
    response = finish_upload(client, url, EMPTY_DIGEST)
    assert response.status_code == 201, response.text
    assert client.head(f"/v2/{other}/blobs/{EMPTY_DIGEST}").status_code == 200


def test_sha512_monolithic(client: httpx.Client, repo: str) -> None:
    data = random_bytes(3333, seed=8)
    digest = digest_of(data, "sha512")
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert_readable(client, repo, digest, data)
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.headers["Content-Length"] == str(len(data))


def test_sha512_chunked(client: httpx.Client, repo: str) -> None:
    data = random_bytes(20_000, seed=9)
    digest = digest_of(data, "sha512")
    url = start_upload(client, repo)
    for start in range(0, len(data), 6000):
        response = patch_chunk(client, url, data[start : start + 6000], start)
        assert response.status_code == 202, response.text
        url = location(response)
    response = finish_upload(client, url, digest)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert_readable(client, repo, digest, data)


def test_sha512_wrong_digest(client: httpx.Client, repo: str) -> None:
    url = start_upload(client, repo)
    wrong = digest_of(b"different", "sha512")
    expect_error(finish_upload(client, url, wrong, b"content"), 400, "DIGEST_INVALID")


def test_final_put_with_content_range(client: httpx.Client, repo: str) -> None:
    data = random_bytes(6000, seed=10)
    url = start_upload(client, repo)
    response = patch_chunk(client, url, data[:4000], 0)
    assert response.status_code == 202, response.text
    response = client.put(
        httpx.URL(location(response)).copy_merge_params({"digest": digest_of(data)}),
        content=data[4000:],
        headers={"Content-Range": f"4000-{len(data) - 1}"},
    )
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)


def test_final_put_out_of_order_is_416_and_loses_nothing(client: httpx.Client, repo: str) -> None:
    """The spec's final chunk carries Content-Range; a wrong start must not corrupt the upload."""
    data = random_bytes(6000, seed=11)
    url = start_upload(client, repo)
    response = patch_chunk(client, url, data[:4000], 0)
    assert response.status_code == 202, response.text
    url = location(response)
    refused = client.put(
        httpx.URL(url).copy_merge_params({"digest": digest_of(data)}),
        content=data[3000:],
        headers={"Content-Range": f"3000-{len(data) - 1}"},
    )
    expect_error(refused, 416)
    status = client.get(url)
    assert status.status_code == 204, status.text
    assert range_end(status) == 3999
    response = finish_upload(client, url, digest_of(data), data[4000:])
    assert response.status_code == 201, response.text
    assert_readable(client, repo, digest_of(data), data)
