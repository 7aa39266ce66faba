"""Large blobs: chunked and monolithic streamed uploads, streamed download, bounded server memory.

The bodies are generated on the fly from a seeded generator and never held whole in memory,
on either side. The memory bound here is a loose guard against buffering whole bodies; the
strict speed and memory targets are measured by ``bench/``.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from support.memory import RssSampler
from support.server import RegistryFactory, RegistryServer
from support.streams import GiB, MiB, SeededStream, stream_digest

pytestmark = pytest.mark.slow

CHUNK = 16 * MiB
RSS_LIMIT = 300 * MiB
# Over the idle footprint, the upload must not grow the server by more than this.
RSS_GROWTH_LIMIT = 200 * MiB


@pytest.fixture
def server(registry_factory: RegistryFactory) -> RegistryServer:
    # One worker: the whole server is one process, and the RSS bound is about that process.
    return registry_factory(env={"LADING_WORKERS": "1"})


def _next_url(response: httpx.Response) -> httpx.URL:
    location = response.headers.get("Location")
    assert location, f"{response.status_code} without Location: {response.text[:500]}"
    return response.request.url.join(location)


def with_digest(url: httpx.URL, digest: str) -> httpx.URL:
    """``url`` plus ``digest=``; httpx's ``params=`` would drop the query of the Location."""
    return url.copy_merge_params({"digest": digest})


def _upload_chunked(client: httpx.Client, repo: str, stream: SeededStream) -> tuple[str, int]:
    """POST, then PATCH ``CHUNK`` bytes at a time, then PUT ?digest=; returns (digest, chunks)."""
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    url = _next_url(started)
    offset = 0
    chunks = 0
    while offset < stream.size:
        length = min(CHUNK, stream.size - offset)
        response = client.patch(
            url,
            content=stream.take(length),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{offset}-{offset + length - 1}",
            },
        )
        assert response.status_code == 202, f"chunk at {offset}: {response.text[:500]}"
        assert response.headers.get("Range") == f"0-{offset + length - 1}"
        offset += length
        chunks += 1
        url = _next_url(response)
    status = client.get(url)
    assert status.status_code == 204, status.text
    assert status.headers.get("Range") == f"0-{stream.size - 1}"
    digest = stream.digest
    done = client.put(with_digest(url, digest), headers={"Content-Length": "0"})
    assert done.status_code == 201, done.text
    assert done.headers.get("Docker-Content-Digest") == digest
    return digest, chunks


def _download_digest(client: httpx.Client, repo: str, digest: str, size: int) -> str:
    head = client.head(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == size
    sha = hashlib.sha256()
    received = 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}", follow_redirects=True) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes(MiB):
            sha.update(chunk)
            received += len(chunk)
    assert received == size
    return "sha256:" + sha.hexdigest()


def _assert_memory(server: RegistryServer, idle: int, sampler: RssSampler) -> None:
    assert sampler.samples >= 5, "the RSS sampler barely ran"
    detail = (
        f"{server.kind}: idle {idle / MiB:.0f} MiB, peak {sampler.peak / MiB:.0f} MiB "
        f"over {sampler.samples} samples"
    )
    print(detail)
    assert sampler.peak < RSS_LIMIT, detail
    assert sampler.peak - idle < RSS_GROWTH_LIMIT, detail


def test_chunked_1gib_upload_streams_with_bounded_memory(server: RegistryServer) -> None:
    repo = "e2e/large"
    stream = SeededStream(GiB, seed=20240601)
    with server.client(timeout=300.0) as client:
        idle = server.rss_bytes()
        with RssSampler(server.pid) as sampler:
            digest, chunks = _upload_chunked(client, repo, stream)
        _assert_memory(server, idle, sampler)
        assert chunks == GiB // CHUNK
        with RssSampler(server.pid) as download_sampler:
            assert _download_digest(client, repo, digest, GiB) == digest
        _assert_memory(server, idle, download_sampler)


def test_monolithic_put_256mib(server: RegistryServer) -> None:
    """POST an empty session, then one streamed PUT ?digest= with the whole body."""
    repo = "e2e/mono-put"
    size = 256 * MiB
    digest = stream_digest(size, seed=7)
    stream = SeededStream(size, seed=7)
    with server.client(timeout=300.0) as client:
        idle = server.rss_bytes()
        with RssSampler(server.pid) as sampler:
            started = client.post(f"/v2/{repo}/blobs/uploads/")
            assert started.status_code == 202, started.text
            done = client.put(
                with_digest(_next_url(started), digest),
                content=stream.take(size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            assert done.status_code == 201, done.text
        assert stream.digest == digest
        _assert_memory(server, idle, sampler)
        assert _download_digest(client, repo, digest, size) == digest


def test_single_post_1gib(server: RegistryServer) -> None:
    """Single-request upload (POST ?digest= with the body), optional in the spec; Lading has it."""
    if server.kind != "lading":
        pytest.skip("the reference registry does not implement single-POST uploads")
    repo = "e2e/mono-post"
    size = GiB
    digest = stream_digest(size, seed=11)
    stream = SeededStream(size, seed=11)
    with server.client(timeout=300.0) as client:
        idle = server.rss_bytes()
        with RssSampler(server.pid) as sampler:
            done = client.post(
                f"/v2/{repo}/blobs/uploads/",
                params={"digest": digest},
                content=stream.take(size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            assert done.status_code == 201, done.text
            assert done.headers.get("Docker-Content-Digest") == digest
        _assert_memory(server, idle, sampler)
        assert _download_digest(client, repo, digest, size) == digest


def test_wrong_digest_is_refused_after_streaming(server: RegistryServer) -> None:
    """A 64 MiB body completed with another digest must be refused, not stored."""
    repo = "e2e/mismatch"
    size = 64 * MiB
    stream = SeededStream(size, seed=99)
    wrong = "sha256:" + hashlib.sha256(b"not the body").hexdigest()
    with server.client(timeout=300.0) as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202
        done = client.put(
            with_digest(_next_url(started), wrong),
            content=stream.take(size),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        assert done.status_code == 400, done.text
        assert "DIGEST_INVALID" in done.text
        assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
        assert client.head(f"/v2/{repo}/blobs/{stream.digest}").status_code == 404
