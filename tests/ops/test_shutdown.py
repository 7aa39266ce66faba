"""Graceful shutdown: SIGTERM lets an in-flight PATCH finish; a PATCH cut off keeps the
upload at its last acknowledged state, and the upload resumes on the next server.

With one worker (``lading serve``'s default) and with two (the container image's), where
uvicorn's supervisor passes SIGTERM on to its workers."""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.held_patch import open_patch, read_response_head
from support.server import RegistryServer, start_lading

ENV = {"LADING_SHUTDOWN_TIMEOUT": "3"}
CHUNK = 512 * 1024


def _open_patch(server: RegistryServer, location: str, offset: int, chunk: bytes) -> socket.socket:
    """Send a PATCH's headers and the first half of its body; leave the rest unsent."""
    sock = open_patch(server, urlsplit(location).path, offset, chunk, len(chunk) // 2)
    time.sleep(0.5)  # let the server start consuming the body
    return sock


def _wait_exit(server: RegistryServer, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        assert time.monotonic() < deadline, "server did not exit after SIGTERM"
        time.sleep(0.1)
    return server.process.returncode


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_mid_patch_then_resume(tmp_path: Path, workers: int) -> None:
    env = {**ENV, "LADING_WORKERS": str(workers)}
    data = bytes(range(256)) * (3 * CHUNK // 256)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    server = start_lading(tmp_path, env=env)
    with server.client() as client:
        start = client.post("/v2/drain/app/blobs/uploads/")
        assert start.status_code == 202
        first = client.patch(
            start.headers["Location"],
            content=chunks[0],
            headers={"Content-Range": f"0-{CHUNK - 1}"},
        )
        assert first.status_code == 202
        location = first.headers["Location"]

    # 1. SIGTERM while the second chunk is in flight: the server drains, the PATCH completes.
    sock = _open_patch(server, location, CHUNK, chunks[1])
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sock.sendall(chunks[1][CHUNK // 2 :])
    assert read_response_head(sock)[0] == 202
    sock.close()
    # uvicorn re-raises SIGTERM after a clean shutdown, so -SIGTERM is a normal exit.
    assert _wait_exit(server, 20) in (0, -signal.SIGTERM)

    # 2. SIGTERM while the third chunk is stuck half-sent: after the shutdown timeout the
    #    request is cancelled, and the upload keeps its acknowledged two chunks.
    server = start_lading(tmp_path, env=env)
    sock = _open_patch(server, location, 2 * CHUNK, chunks[2])
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    _wait_exit(server, 30)
    assert time.monotonic() - started >= 2.5  # it waited for the in-flight request first
    sock.close()

    # 3. A new server resumes the upload from the last acknowledged byte.
    server = start_lading(tmp_path, env=env)
    try:
        with server.client() as client:
            status = client.get(location)
            assert status.status_code == 204
            assert status.headers["Range"] == f"0-{2 * CHUNK - 1}"
            # A request killed mid-stream may leave its upload lease behind; the lease
            # expires (30 s) and the upload then continues where it was acknowledged.
            deadline = time.monotonic() + 60
            while True:
                third = client.patch(
                    location,
                    content=chunks[2],
                    headers={"Content-Range": f"{2 * CHUNK}-{3 * CHUNK - 1}"},
                )
                busy = third.status_code == 416 and "another request" in third.text
                if not busy or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert third.status_code == 202, third.text
            done = client.put(third.headers["Location"], params={"digest": digest})
            assert done.status_code == 201, done.text
            blob = client.get(f"/v2/drain/app/blobs/{digest}")
            assert blob.content == data
    finally:
        server.stop()
