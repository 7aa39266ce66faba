"""Minimal HTTP/1.1 clients for the benchmark.

The async client talks raw asyncio streams: httpx costs several times more CPU per
request, and on a 2-core machine every client cycle is taken from the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
from dataclasses import dataclass, field
from urllib.parse import urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT_MANIFESTS = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class BenchError(RuntimeError):
    """A registry answered something a workload cannot go on with."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def location_path(location: str) -> str:
    """The path+query of a Location header, which may be absolute or relative."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_digest(location: str, digest: str) -> str:
    path = location_path(location)
    return path + ("&" if "?" in path else "?") + "digest=" + digest


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class AsyncConn:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.writer.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.writer.write(body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        hdrs: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        data = b""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "content-length" in hdrs:
            data = await self.reader.readexactly(int(hdrs["content-length"]))
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await self.reader.read()
            hdrs["connection"] = "close"
        if hdrs.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, hdrs, data)


@dataclass
class AsyncPool:
    """A fixed pool of keep-alive connections; `size` is the concurrency limit."""

    host: str
    port: int
    size: int
    _free: asyncio.Queue[AsyncConn] = field(default_factory=asyncio.Queue)
    _all: list[AsyncConn] = field(default_factory=list)

    def __post_init__(self) -> None:
        for _ in range(self.size):
            conn = AsyncConn(self.host, self.port)
            self._all.append(conn)
            self._free.put_nowait(conn)

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        conn = await self._free.get()
        try:
            return await conn.request(method, path, headers, body)
        except BaseException:
            await conn.close()
            raise
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


def expect(resp: Response, *statuses: int, what: str) -> Response:
    if resp.status not in statuses:
        raise BenchError(f"{what}: HTTP {resp.status} {resp.body[:300]!r}")
    return resp


async def push_blob(pool: AsyncPool, repo: str, data: bytes, digest: str | None = None) -> str:
    """Monolithic push: POST then PUT ?digest= with the whole body."""
    digest = digest or sha256_digest(data)
    resp = expect(await pool.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, what="POST upload")
    put = with_digest(resp.headers["location"], digest)
    hdrs = {"Content-Type": "application/octet-stream"}
    expect(await pool.request("PUT", put, hdrs, data), 201, what="PUT blob")
    return digest


def sync_conn(base: str, timeout: float = 120.0) -> http.client.HTTPConnection:
    parts = urlsplit(base)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)


def sync_request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
