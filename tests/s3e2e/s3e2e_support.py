"""Helpers of the S3 end-to-end tests: bucket inspection, restarts, a small registry client."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from s3servers import S3Server, _find_tool, _wait_ready
from support.server import RegistryFactory, RegistryServer, start_lading

MiB = 1024 * 1024
PREFIX = "lading/e2e"
SERVERS = ("moto", "rclone")


@dataclass
class S3Target:
    """A bucket on a running S3 server, and the settings that point Lading at it."""

    server: S3Server
    bucket: str
    prefix: str = PREFIX
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.server.name

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "LADING_STORAGE": "s3",
            "LADING_S3_BUCKET": self.bucket,
            "LADING_S3_ENDPOINT_URL": self.server.endpoint_url,
            "LADING_S3_REGION": self.server.region,
            "LADING_S3_PREFIX": self.prefix,
            "LADING_S3_PATH_STYLE": "true",
            "LADING_S3_ACCESS_KEY": self.server.access_key,
            "LADING_S3_SECRET_KEY": self.server.secret_key,
            # One process: restarts, RSS and logs concern exactly one server.
            "LADING_WORKERS": "1",
            # No background GC pass racing the assertions about bucket contents.
            "LADING_GC_INTERVAL_SECONDS": "0",
            **self.extra,
        }
        env.update(overrides)
        return env

    def client(self) -> Any:
        return self.server.client()

    def objects(self) -> list[str]:
        """Every object key in the bucket (paginated)."""
        keys: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def multipart_uploads(self) -> list[str]:
        return [
            key.removeprefix("multipart:")
            for key in self.server.leftovers(self.bucket)
            if key.startswith("multipart:")
        ]

    def upload_leftovers(self) -> list[str]:
        """Tail objects under ``_uploads/`` and unfinished multipart uploads."""
        tails = [k for k in self.objects() if k.startswith(f"{self.prefix}/_uploads/")]
        return tails + [f"multipart:{k}" for k in self.multipart_uploads()]


def restart_lading(factory: RegistryFactory, server: RegistryServer) -> RegistryServer:
    """Stop ``server`` and start a new ``lading serve`` on the same data directory and port."""
    server.stop()
    factory.servers.remove(server)
    restarted = start_lading(server.data_dir.parent, env=server.extra_env, port=server.port)
    factory.servers.append(restarted)
    return restarted


def relaunch_s3(server: S3Server) -> S3Server:
    """Start ``server``'s program again on the same port (and, for rclone, the same data)."""
    port = server.endpoint_url.rsplit(":", 1)[1]
    if server.name == "moto":
        cmd = [_find_tool("moto_server"), "-H", "127.0.0.1", "-p", port]
    else:
        assert server.data_dir is not None
        cmd = [
            _find_tool("rclone"), "serve", "s3", "--config", "",
            "--auth-key", f"{server.access_key},{server.secret_key}",
            "--addr", f"127.0.0.1:{port}", "--no-modtime", "--no-cleanup",
            "--disable-multipart-streaming", str(server.data_dir),
        ]  # fmt: skip
    log = Path(server._cleanup[0]) / f"relaunch-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    # The old socket may linger briefly; retry the bind a few times.
    for _ in range(20):
        time.sleep(0.25)
        if process.poll() is None:
            break
        with log.open("ab") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    _wait_ready(server.endpoint_url, process, log)
    server.process = process
    return server


# -- a small registry client -------------------------------------------------------


def next_url(response: httpx.Response) -> httpx.URL:
    location = response.headers.get("Location")
    assert location, f"{response.status_code} without Location: {response.text[:500]}"
    return response.request.url.join(location)


def with_digest(url: httpx.URL, digest: str) -> httpx.URL:
    return url.copy_merge_params({"digest": digest})


def start_upload(client: httpx.Client, repo: str) -> httpx.URL:
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    return next_url(started)


def patch(client: httpx.Client, url: httpx.URL, offset: int, body: bytes) -> httpx.URL:
    response = client.patch(
        url,
        content=body,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(body) - 1}",
        },
    )
    assert response.status_code == 202, f"PATCH at {offset}: {response.text[:500]}"
    assert response.headers["Range"] == f"0-{offset + len(body) - 1}"
    return next_url(response)


def finish(client: httpx.Client, url: httpx.URL, digest: str) -> httpx.Response:
    return client.put(with_digest(url, digest), headers={"Content-Length": "0"})


def push_chunks(client: httpx.Client, repo: str, chunks: list[bytes], digest: str) -> None:
    url = start_upload(client, repo)
    offset = 0
    for chunk in chunks:
        url = patch(client, url, offset, chunk)
        offset += len(chunk)
    done = finish(client, url, digest)
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
