"""Replicas whose clocks disagree still agree on who holds an upload's lease (PostgreSQL).

Two ``lading serve`` processes share one PostgreSQL database and one storage directory;
one runs under libfaketime two minutes off, four times the 30 s upload lease: either the
replica that tries to take the upload over is ahead, or the one holding the lease is
behind (so the expiries it writes would be long past by the other's clock). While a
PATCH streams slowly through replica A, replica B must answer a PATCH or PUT of the same
upload "busy" (416 with its Range), before and after A renewed its lease, and the upload
must finish intact through A. With lease times from each process's own clock, B took the
upload over. On SQLite every process that can open the database runs on its host, so
its clock is the database's clock: the test runs in the PostgreSQL pass only.
"""

from __future__ import annotations

import glob
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from support import postgres
from support.held_patch import open_patch, read_response_head
from support.server import start_lading
from support.tools import unavailable

SKEW = 120
CHUNK = 512 * 1024
# The appender renews its lease on the first write once 5 s have passed (RENEW_EVERY).
PAST_RENEWAL = 6.0


def _faketime_env(seconds: int) -> dict[str, str]:
    """Environment that moves a process's wall clock ``seconds`` on (libfaketime)."""
    libraries = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not libraries:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    return {
        "LD_PRELOAD": libraries[0],
        "FAKETIME": f"{seconds:+d}s",
        # Only the wall clock is skewed, as on a host whose clock is off.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _check_skewed(env: dict[str, str], seconds: int) -> None:
    """A test that passes because libfaketime did nothing would prove nothing."""
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert abs(float(probe.stdout) - time.time() - seconds) < 10, probe.stderr


def _wait_for_lease(database_url: str, upload_id: str) -> None:
    """Until replica A holds the lease (it takes it before reading the body)."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT lease_token FROM upload_sessions WHERE id = %s", (upload_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                return
            time.sleep(0.05)
    raise AssertionError("replica A never took the upload's lease")


def _assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 416, response.text
    assert "another request" in response.text
    assert response.headers["Range"] == "0-0"


@pytest.mark.parametrize(
    ("skew_a", "skew_b"), [(0, SKEW), (-SKEW, 0)], ids=["taker-ahead", "holder-behind"]
)
def test_skewed_replica_cannot_take_a_live_lease(tmp_path: Path, skew_a: int, skew_b: int) -> None:
    if not postgres.wants_postgres():
        pytest.skip("leases on SQLite use the process clock, which is the database's")
    env_a, env_b = (_faketime_env(s) if s else {} for s in (skew_a, skew_b))
    _check_skewed(env_a or env_b, skew_a or skew_b)
    data = os.urandom(CHUNK)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    replica_a = start_lading(tmp_path, env=env_a)
    database_url = (replica_a.data_dir / "test-database-url").read_text().strip()
    replica_b = start_lading(tmp_path, env=env_b)
    sock: socket.socket | None = None
    try:
        with replica_a.client() as a, replica_b.client() as b:
            started = a.post("/v2/skew/app/blobs/uploads/")
            assert started.status_code == 202, started.text
            path = urlsplit(started.headers["Location"]).path
            upload_id = started.headers["Docker-Upload-UUID"]

            sock = open_patch(replica_a, path, 0, data, CHUNK // 4)
            _wait_for_lease(database_url, upload_id)
            range_0 = {"Content-Range": f"0-{CHUNK - 1}"}
            _assert_busy(b.patch(path, content=data, headers=range_0))
            _assert_busy(b.put(path, params={"digest": digest}))

            # A renews its lease on its next write; B must still see it live.
            time.sleep(PAST_RENEWAL)
            sock.sendall(data[CHUNK // 4 : CHUNK // 2])
            time.sleep(1.0)
            _assert_busy(b.patch(path, content=data, headers=range_0))

            sock.sendall(data[CHUNK // 2 :])
            status, head = read_response_head(sock)
            assert status == 202, head
            done = a.put(path, params={"digest": digest})
            assert done.status_code == 201, done.text
            blob = b.get(f"/v2/skew/app/blobs/{digest}")
            assert blob.status_code == 200 and blob.content == data
    finally:
        if sock is not None:
            sock.close()
        replica_b.stop()
        replica_a.stop()
