"""Failed upload requests leave their session usable by the client's retry.

Each test runs its own single-worker ``lading serve`` (the failures are per process: a
crash, a database refusing writes through a trigger, as it would on a full disk).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time

import httpx
import psutil
import pytest
from support.refusals import refusing
from support.server import RegistryFactory, RegistryServer, start_lading
from v2client import digest_of, finish_upload, location, patch_chunk, random_bytes

REPO = "api/upload-failures"
MIB = 1024 * 1024
SINGLE = ["--workers", "1"]


def _kill(server: RegistryServer) -> None:
    """SIGKILL the server and its workers by PID: a crash, no shutdown code runs."""
    root = psutil.Process(server.pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)
    server.process.wait(timeout=10)


def test_final_put_on_a_fresh_session_survives_a_crash(lading_factory: RegistryFactory) -> None:
    """containerd PUTs a whole layer on the session a POST opened: a server that dies
    while that PUT streams must still have the session when it comes back (it ended
    the session before writing, so the retry got 404 and had to start over)."""
    first = lading_factory(args=SINGLE)
    data = random_bytes(6 * MIB, seed=41)  # above SMALL_BODY: streamed, not read whole
    with first.client() as client:
        started = client.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202, started.text
        path = httpx.URL(location(started)).raw_path.decode()
    target = f"{path}?digest={digest_of(data)}"
    head = (
        f"PUT {target} HTTP/1.1\r\nHost: {first.host_port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", first.port), timeout=30) as sock:
        sock.sendall(head + data[: 4 * MIB])
        # The server has the request (its bytes are being written) when it dies.
        time.sleep(1.0)
        _kill(first)
    second = start_lading(first.data_dir.parent, args=SINGLE)
    lading_factory.servers.append(second)
    with second.client() as client:
        status = client.get(path)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == "0-0"
        # The dead request's lease runs out (30 s) as a crashed PATCH's does; until
        # then a request is told the upload is busy, with where it stands. (An empty
        # PATCH: a PUT refused before its body is read may see the connection reset.)
        probe = client.patch(path, content=b"")
        assert probe.status_code in (202, 416), probe.text
        assert probe.headers["Range"] == "0-0"
        assert probe.headers["Location"] == path


def test_patch_refused_by_the_database_keeps_what_was_acknowledged(
    lading_factory: RegistryFactory,
) -> None:
    """A PATCH whose new state the database refused (SQLite on a full disk) cannot give
    its lease back either, as that is a write too. The upload keeps its acknowledged
    bytes; until the lease expires (the path of a crashed writer: upload state lives
    only in the database) a retry is told the upload is busy, with its true Range."""
    server = lading_factory(args=SINGLE)
    data = random_bytes(2 * MIB, seed=42)
    acked, refused = data[:MIB], data[MIB:]
    with server.client(timeout=30) as client:
        started = client.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202, started.text
        response = patch_chunk(client, location(started), acked, 0)
        assert response.status_code == 202, response.text
        url = location(response)
        # Every write that ends a lease (the PATCH's record of its new state, the
        # release) is refused; taking or renewing one still goes through.
        ends_lease = refusing(
            server, "UPDATE OF lease_token", "upload_sessions", "NEW.lease_token IS NULL"
        )
        with ends_lease, server.client(timeout=30) as refused_client:
            failed = patch_chunk(refused_client, url, refused, len(acked))
            assert failed.status_code >= 500, failed.text
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == f"0-{len(acked) - 1}"
        retry = patch_chunk(client, url, refused, len(acked))
        assert retry.status_code == 416, retry.text
        assert "another request" in retry.text
        assert retry.headers["Range"] == f"0-{len(acked) - 1}"


@pytest.mark.parametrize("size", [64 * 1024, 6 * MIB], ids=["read-whole", "streamed"])
def test_final_put_on_a_fresh_session_committed_but_unrecorded(
    lading_factory: RegistryFactory, size: int
) -> None:
    """A PUT whose blob storage committed but the database did not record: its session
    comes back empty with a fresh storage upload (the commit consumed the first), so the
    same PUT retried succeeds."""
    server = lading_factory(args=SINGLE)
    data = random_bytes(size, seed=size)
    with server.client(timeout=30) as client:
        started = client.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202, started.text
        url = location(started)
        with refusing(server, "INSERT", "blobs"), server.client(timeout=30) as refused_client:
            failed = finish_upload(refused_client, url, digest_of(data), data)
            assert failed.status_code >= 500, failed.text
        status = client.get(url)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == "0-0"
        done = finish_upload(client, url, digest_of(data), data)
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/{REPO}/blobs/{digest_of(data)}").content == data
