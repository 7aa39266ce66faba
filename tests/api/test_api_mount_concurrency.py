"""Cross-repository mounts, concurrent pushes, and uploads continued across worker processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support.server import RegistryServer
from v2client import (
    OCI_CONFIG,
    OCI_LAYER,
    Blob,
    digest_of,
    expect_error,
    finish_upload,
    image_manifest,
    location,
    patch_chunk,
    push_blob,
    push_blobs,
    push_image,
    put_manifest,
    random_bytes,
    start_upload,
    unique,
)


def mount(client: httpx.Client, target: str, digest: str, source: str | None) -> httpx.Response:
    params = {"mount": digest}
    if source is not None:
        params["from"] = source
    return client.post(f"/v2/{target}/blobs/uploads/", params=params)


def test_mount_from_another_repository(client: httpx.Client, repo: str) -> None:
    data = random_bytes(2048, seed=20)
    digest = push_blob(client, repo, data)
    target = unique("api/mount-target")
    response = mount(client, target, digest, repo)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert location(response).endswith(f"/v2/{target}/blobs/{digest}")
    pulled = client.get(f"/v2/{target}/blobs/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == data


def test_mount_of_unknown_blob_starts_an_upload(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"the source has something")
    missing = digest_of(b"never pushed " + repo.encode())
    target = unique("api/mount-target")
    response = mount(client, target, missing, repo)
    assert response.status_code == 202, response.text
    url = location(response)
    assert "/blobs/uploads/" in url
    # The fallback session is a real upload session.
    data = b"pushed instead of mounted"
    done = finish_upload(client, url, digest_of(data), data)
    assert done.status_code == 201, done.text
    expect_error(client.get(f"/v2/{target}/blobs/{missing}"), 404, "BLOB_UNKNOWN")


def test_mount_from_unknown_repository_starts_an_upload(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"exists, but not in the named source")
    target = unique("api/mount-target")
    response = mount(client, target, digest, unique("api/no-such-repo"))
    assert response.status_code == 202, response.text
    assert client.get(location(response)).status_code == 204
    expect_error(client.get(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_mount_without_from(client: httpx.Client, repo: str) -> None:
    digest = push_blob(client, repo, b"mount me without naming the source")
    target = unique("api/mount-target")
    response = mount(client, target, digest, None)
    # 201 (automatic content discovery) or 202 (plain upload) are both allowed.
    assert response.status_code in (201, 202), response.text
    if response.status_code == 202:
        expect_error(client.get(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_concurrent_pushes_of_the_same_blob(api_server: RegistryServer, repo: str) -> None:
    data = random_bytes(64 * 1024, seed=21)
    digest = digest_of(data)
    repos = [repo, repo, repo, unique("api/concurrent"), unique("api/concurrent")]

    def push(index: int) -> tuple[int, str]:
        with api_server.client(timeout=60.0) as http:
            target = repos[index % len(repos)]
            if index % 2:
                response = http.post(
                    f"/v2/{target}/blobs/uploads/", params={"digest": digest}, content=data
                )
            else:
                url = start_upload(http, target)
                first = patch_chunk(http, url, data[:30000], 0)
                assert first.status_code == 202, first.text
                response = finish_upload(http, location(first), digest, data[30000:])
            return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(push, range(24)))
    assert all(status == 201 for status, _ in results), results
    with api_server.client() as http:
        for target in set(repos):
            response = http.get(f"/v2/{target}/blobs/{digest}")
            assert response.status_code == 200, target
            assert response.content == data


def test_upload_continues_across_worker_processes(client: httpx.Client, repo: str) -> None:
    """Many small PATCHes on fresh connections: with 2 workers they alternate processes."""
    data = random_bytes(40 * 997, seed=22)
    url = start_upload(client, repo)
    for start in range(0, len(data), 997):
        # A new connection per chunk lets the kernel hand it to either worker.
        with httpx.Client(timeout=30.0) as fresh:
            response = patch_chunk(fresh, url, data[start : start + 997], start)
            assert response.status_code == 202, f"chunk at {start}: {response.text}"
            url = location(response)
            status = fresh.get(url)
            assert status.status_code == 204
    response = finish_upload(client, url, digest_of(data))
    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/blobs/{digest_of(data)}").content == data


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_parallel_chunked_uploads_do_not_mix(
    api_server: RegistryServer, repo: str, algorithm: str
) -> None:
    blobs = [random_bytes(12_000 + i, seed=100 + i) for i in range(8)]

    def upload(data: bytes) -> str:
        with api_server.client(timeout=60.0) as http:
            url = start_upload(http, repo)
            for start in range(0, len(data), 4000):
                response = patch_chunk(http, url, data[start : start + 4000], start)
                assert response.status_code == 202, response.text
                url = location(response)
            done = finish_upload(http, url, digest_of(data, algorithm))
            assert done.status_code == 201, done.text
            return str(done.headers["Docker-Content-Digest"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(upload, blobs))
    with api_server.client() as http:
        for data, digest in zip(blobs, digests, strict=True):
            assert digest == digest_of(data, algorithm)
            assert http.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_racing_patches_of_one_upload_stay_consistent(
    api_server: RegistryServer, repo: str
) -> None:
    """Two clients PATCH the same offset of one session at once: one wins, nothing mixes.

    Whatever the outcome, a committed blob's bytes must hash to its digest.
    """
    size = 4 * 1024 * 1024
    bodies = [bytes([65 + i]) * size for i in range(4)]
    with api_server.client() as http:
        url = start_upload(http, repo)

    def send(body: bytes) -> int:
        with api_server.client(timeout=60.0) as racer:
            return patch_chunk(racer, url, body, 0).status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))
    assert all(status in (202, 416) for status in statuses), statuses
    winners = [body for body, status in zip(bodies, statuses, strict=True) if status == 202]
    assert len(winners) == 1, statuses
    with api_server.client(timeout=60.0) as http:
        status = http.get(url)
        assert status.status_code == 204
        assert status.headers["Range"].removeprefix("bytes=") == f"0-{size - 1}"
        digest = digest_of(winners[0])
        done = finish_upload(http, url, digest)
        assert done.status_code == 201, done.text
        pulled = http.get(f"/v2/{repo}/blobs/{digest}")
        assert pulled.status_code == 200
        assert digest_of(pulled.content) == digest, "stored bytes do not match their digest"


def test_concurrent_manifest_pushes(api_server: RegistryServer, repo: str) -> None:
    with api_server.client() as http:
        image = push_image(http, repo, seed=23)
    manifest = image.manifest

    def put(index: int) -> tuple[int, str]:
        with api_server.client(timeout=60.0) as racer:
            tag = "same" if index % 2 else f"t{index}"
            reference = manifest.digest if index % 5 == 0 else tag
            response = put_manifest(racer, repo, reference, manifest)
            return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(put, range(30)))
    assert all(status == 201 for status, _ in results), results
    with api_server.client() as http:
        tags = http.get(f"/v2/{repo}/tags/list").json()["tags"]
        expected = {"same"} | {f"t{i}" for i in range(30) if i % 2 == 0 and i % 5}
        assert set(tags) == expected
        for tag in tags:
            assert http.get(f"/v2/{repo}/manifests/{tag}").content == manifest.data


def test_concurrent_first_pushes_of_one_manifest(api_server: RegistryServer, repo: str) -> None:
    """Racing pushes of a manifest nobody has stored yet, under different tags: one
    inserts the row, the others find it (none fails on the unique key)."""
    config = Blob(b'{"architecture":"amd64","os":"linux","race":1}', OCI_CONFIG)
    layer = Blob(random_bytes(300, seed=24), OCI_LAYER)
    with api_server.client() as http:
        push_blobs(http, repo, [config, layer])
    manifest = image_manifest(config, [layer])

    def put(index: int) -> tuple[int, str]:
        with api_server.client(timeout=60.0) as racer:
            response = put_manifest(racer, repo, f"r{index}", manifest)
            return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(put, range(12)))
    assert all(status == 201 for status, _ in results), results
    with api_server.client() as http:
        assert len(http.get(f"/v2/{repo}/tags/list").json()["tags"]) == 12
        assert http.get(f"/v2/{repo}/manifests/r0").content == manifest.data


@pytest.mark.parametrize(
    ("digest", "source"),
    [
        ("sha256:nothex", "api/src"),
        ("not-a-digest", "api/src"),
        ("VALID", "Not/A/Name"),
        ("VALID", ".."),
    ],
)
def test_mount_with_invalid_arguments_falls_back_to_upload(
    client: httpx.Client, repo: str, digest: str, source: str
) -> None:
    """Spec: "If a mount fails due to invalid repository or digest arguments, the registry
    will fall back to the standard upload behavior and return a 202 Accepted"."""
    if digest == "VALID":
        digest = push_blob(client, repo, b"a real blob for an invalid source name")
    response = mount(client, repo, digest, source)
    assert response.status_code == 202, response.text
    assert client.get(location(response)).status_code == 204
