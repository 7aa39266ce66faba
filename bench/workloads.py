"""Workloads that talk HTTP directly: big blobs, blob HEADs, small blobs, tags."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.httpc import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    AsyncPool,
    BenchError,
    expect,
    location_path,
    push_blob,
    sha256_digest,
    sync_conn,
    sync_request,
    with_digest,
)
from bench.servers import ClientCpu, ProcSampler, Server

MiB = 1024 * 1024
CHUNK = 16 * MiB


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


@dataclass
class BigBlob:
    """A large blob streamed from one random 16 MiB buffer.

    Chunk i is the buffer with its first 32 bytes replaced by sha256(seed, i), so every
    chunk (and every blob, by seed) differs while generation costs almost nothing.
    """

    size: int
    seed: bytes
    base: bytes

    def prefix(self, i: int) -> bytes:
        return hashlib.sha256(self.seed + i.to_bytes(8, "big")).digest()

    def chunks(self) -> list[tuple[bytes, memoryview]]:
        out = []
        view = memoryview(self.base)
        for i in range(0, (self.size + CHUNK - 1) // CHUNK):
            n = min(CHUNK, self.size - i * CHUNK)
            out.append((self.prefix(i), view[32:n]))
        return out

    def digest(self) -> str:
        h = hashlib.sha256()
        for pre, rest in self.chunks():
            h.update(pre)
            h.update(rest)
        return "sha256:" + h.hexdigest()


def make_big_blob(size: int, seed: bytes, base: bytes | None = None) -> tuple[BigBlob, str]:
    blob = BigBlob(size, seed, base if base is not None else os.urandom(CHUNK))
    return blob, blob.digest()


def _upload_start(conn: Any, repo: str) -> str:
    status, hdrs, body = sync_request(conn, "POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise BenchError(f"POST upload: {status} {body[:200]!r}")
    return str(hdrs["location"])


def push_monolithic(server: Server, repo: str, blob: BigBlob, digest: str) -> None:
    """POST, then one PUT ?digest= streaming the whole body with large writes."""
    conn = sync_conn(server.base, timeout=300)
    try:
        loc = _upload_start(conn, repo)
        conn.putrequest("PUT", with_digest(loc, digest), skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(blob.size))
        conn.endheaders()
        for pre, rest in blob.chunks():
            conn.send(pre)
            conn.send(rest)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 201:
            raise BenchError(f"PUT monolithic: {resp.status} {body[:200]!r}")
    finally:
        conn.close()


def push_chunked(server: Server, repo: str, blob: BigBlob, digest: str) -> dict[str, float]:
    """POST, 16 MiB PATCHes with Content-Range, then PUT ?digest= with no body.

    Returns the phases: the PATCHes, the final PUT, and the median wait from a
    PATCH's last byte to its 202.
    """
    conn = sync_conn(server.base, timeout=600)
    waits: list[float] = []
    try:
        loc = _upload_start(conn, repo)
        started = time.perf_counter()
        offset = 0
        for pre, rest in blob.chunks():
            n = len(pre) + len(rest)
            conn.putrequest("PATCH", location_path(loc), skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(n))
            conn.putheader("Content-Range", f"{offset}-{offset + n - 1}")
            conn.endheaders()
            conn.send(pre)
            conn.send(rest)
            sent = time.perf_counter()
            resp = conn.getresponse()
            body = resp.read()
            waits.append(time.perf_counter() - sent)
            if resp.status != 202:
                raise BenchError(f"PATCH at {offset}: {resp.status} {body[:200]!r}")
            loc = resp.getheader("Location") or loc
            offset += n
        patched = time.perf_counter()
        status, _, body = sync_request(
            conn, "PUT", with_digest(loc, digest), {"Content-Length": "0"}, b""
        )
        if status != 201:
            raise BenchError(f"PUT after PATCHes: {status} {body[:200]!r}")
        done = time.perf_counter()
    finally:
        conn.close()
    return {
        "patches_s": patched - started,
        "commit_s": done - patched,
        "patch_wait_ms": statistics.median(waits) * 1000,
        "patches": len(waits),
    }


def pull(server: Server, repo: str, digest: str, size: int) -> None:
    conn = sync_conn(server.base, timeout=300)
    try:
        conn.request("GET", f"/v2/{repo}/blobs/{digest}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"GET blob: {resp.status} {resp.read()[:200]!r}")
        buf = bytearray(4 * MiB)
        got = 0
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            got += n
        if got != size:
            raise BenchError(f"GET blob: got {got} bytes, expected {size}")
    finally:
        conn.close()


def big_blobs(
    server: Server,
    blob_m: BigBlob,
    dig_m: str,
    blob_c: BigBlob,
    dig_c: str,
    before_push: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """1 GiB monolithic push, chunked push, pull; peak server RSS during the pushes.

    ``before_push`` runs before each push (outside its timing).
    """
    repo = "bench/big"
    out: dict[str, float] = {}
    with ProcSampler(server.pid) as mem:
        before_push()
        with ClientCpu() as c:
            push_monolithic(server, repo, blob_m, dig_m)
        out["push_mono_mbs"] = blob_m.size / MiB / c.wall
        out["push_mono_client_cpu"] = c.share
        before_push()
        with ClientCpu() as c:
            push_chunked(server, repo, blob_c, dig_c)
        out["push_chunked_mbs"] = blob_c.size / MiB / c.wall
    out["peak_rss_mib"] = mem.peak_rss / MiB
    out["idle_rss_mib"] = mem.base_rss / MiB
    out["peak_rss_one_process_mib"] = mem.peak_proc_rss / MiB
    out["server_cpu_s"] = mem.cpu_seconds
    out["rss_samples"] = mem.samples
    with ClientCpu() as c:
        pull(server, repo, dig_m, blob_m.size)
    out["pull_mbs"] = blob_m.size / MiB / c.wall
    out["pull_client_cpu"] = c.share
    return out


def blob_head_latency(server: Server, digest: str, n: int) -> dict[str, float]:
    conn = sync_conn(server.base, timeout=30)
    lat: list[float] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("HEAD", f"/v2/bench/big/blobs/{digest}")
            resp = conn.getresponse()
            resp.read()
            lat.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise BenchError(f"HEAD blob: {resp.status}")
    finally:
        conn.close()
    return {"head_p50_ms": pct(lat, 50) * 1e3, "head_p99_ms": pct(lat, 99) * 1e3, "head_n": n}


def image_manifest(config: tuple[str, int], layer: tuple[str, int], note: str) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer[0], "size": layer[1]}],
        "annotations": {"org.example.bench": note},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def _push_base(pool: AsyncPool, repo: str) -> tuple[tuple[str, int], tuple[str, int]]:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = os.urandom(4096)
    return (await push_blob(pool, repo, config), len(config)), (
        await push_blob(pool, repo, layer),
        len(layer),
    )


async def _put_manifest(pool: AsyncPool, repo: str, ref: str, body: bytes) -> None:
    resp = await pool.request(
        "PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": OCI_MANIFEST}, body
    )
    expect(resp, 201, what=f"PUT manifest {ref}")


async def _gather_bounded(jobs: list[Any], deadline: float) -> None:
    """Await coroutines (already bounded by the pool size) before a deadline."""
    remaining = deadline - time.monotonic()
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=max(1.0, remaining))


def setup_manifest(server: Server, repo: str = "bench/manifest") -> str:
    """Push one small image tagged `latest`; returns its manifest path for wrk/hey."""

    async def go() -> None:
        pool = AsyncPool("127.0.0.1", server.port, 2)
        try:
            config, layer = await _push_base(pool, repo)
            await _put_manifest(pool, repo, "latest", image_manifest(config, layer, "latest"))
        finally:
            await pool.close()

    asyncio.run(go())
    return f"/v2/{repo}/manifests/latest"


def small_blobs(
    server: Server, count: int, size: int, concurrency: int, budget: float
) -> dict[str, float]:
    blobs = [os.urandom(size) for _ in range(count)]
    digests = [sha256_digest(b) for b in blobs]

    async def go() -> ClientCpu:
        pool = AsyncPool("127.0.0.1", server.port, concurrency)
        try:
            with ClientCpu() as c:
                await _gather_bounded(
                    [
                        push_blob(pool, "bench/small", b, d)
                        for b, d in zip(blobs, digests, strict=True)
                    ],
                    time.monotonic() + budget,
                )
            return c
        finally:
            await pool.close()

    c = asyncio.run(go())
    return {"blobs_per_s": count / c.wall, "client_cpu": c.share, "count": count}


def tags(
    server: Server,
    count: int,
    concurrency: int,
    list_reps: int,
    page: int,
    budget: float,
    repo: str = "bench/tags",
) -> dict[str, float]:
    """Push `count` tags (distinct manifests) on a fresh repo, then time tags/list."""
    out: dict[str, float] = {"count": count}

    async def go() -> None:
        pool = AsyncPool("127.0.0.1", server.port, concurrency)
        try:
            config, layer = await _push_base(pool, repo)
            bodies = [(f"t{i:05d}", image_manifest(config, layer, f"t{i}")) for i in range(count)]
            with ClientCpu() as c:
                await _gather_bounded(
                    [_put_manifest(pool, repo, t, b) for t, b in bodies], time.monotonic() + budget
                )
            out["tags_per_s"] = count / c.wall
            out["client_cpu"] = c.share
            full: list[float] = []
            for _ in range(list_reps):
                t0 = time.perf_counter()
                resp = await pool.request("GET", f"/v2/{repo}/tags/list")
                full.append(time.perf_counter() - t0)
                expect(resp, 200, what="tags/list")
                got = len(json.loads(resp.body)["tags"])
                if got != count:
                    raise BenchError(f"tags/list returned {got} tags, expected {count}")
            out["list_full_p50_ms"] = statistics.median(full) * 1e3
            out["list_full_p99_ms"] = pct(full, 99) * 1e3
            walks: list[float] = []
            pages: list[float] = []
            npages = 0
            for _ in range(list_reps):
                path: str | None = f"/v2/{repo}/tags/list?n={page}"
                seen, t_walk = 0, time.perf_counter()
                for _ in range(count // page + 2):  # bounded walk
                    if path is None:
                        break
                    t0 = time.perf_counter()
                    resp = await pool.request("GET", path)
                    pages.append(time.perf_counter() - t0)
                    expect(resp, 200, what="tags/list page")
                    seen += len(json.loads(resp.body)["tags"])
                    link = resp.headers.get("link", "")
                    path = (
                        location_path(link.split(";")[0].strip().strip("<>"))
                        if "next" in link
                        else None
                    )
                walks.append(time.perf_counter() - t_walk)
                npages = len(pages) // len(walks)
                if seen != count:
                    out["list_paged_incomplete"] = seen
            out["list_paged_walk_ms"] = statistics.median(walks) * 1e3
            out["list_paged_pages"] = npages  # 1 means the server ignored n
            out["list_paged_page_p50_ms"] = statistics.median(pages) * 1e3
            out["list_paged_page_p99_ms"] = pct(pages, 99) * 1e3
        finally:
            await pool.close()

    asyncio.run(go())
    return out
