"""``kill -9`` of ``lading gc`` mid-run, then a re-run: nothing dangling, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from httpreg import make_image, push_image, verify_image
from serverenv import database_env, fsck, gc, lading
from sqlalchemy import create_engine
from support.server import RegistryFactory, RegistryServer, lading_command

IMAGES = 30
KEPT = 5
KEPT_BLOBS = 3 + KEPT + KEPT  # 3 shared bases + the kept images' own layers and configs
LEASE = 2.0  # seconds, of the pass that gets killed


@pytest.mark.timeout(180)
def test_gc_killed_mid_run_then_rerun_is_consistent(
    backend: str,
    storage_env: dict[str, str],
    tmp_path: Path,
    lading_factory: RegistryFactory,
) -> None:
    env = {**database_env(backend, tmp_path), **storage_env, "LADING_GC_INTERVAL_SECONDS": "0"}
    server = lading_factory(env=env)
    images = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(IMAGES):
            shared = f"base layer {i % 3}\n".encode() * 300
            image = make_image(f"img{i}", [shared, f"own layer {i}\n".encode() * 100])
            push_image(client, "crash/app", f"v{i}", image)
            images[f"v{i}"] = image
        for i in range(KEPT, IMAGES):
            assert client.delete(f"/v2/crash/app/manifests/v{i}").status_code == 202

    blobs_before = _count(lading(server, "usage").stdout, "blobs")
    assert blobs_before == 3 + 2 * IMAGES
    # Slow each deletion down so the kill lands between commits and byte deletions;
    # a short lease, so the next pass may take the killed one for dead soon.
    full_env = {
        **os.environ,
        **server.extra_env,
        "LADING_GC_TEST_TASK_PAUSE": "0.1",
        "LADING_GC_TEST_LEASE_SECONDS": str(LEASE),
    }
    proc = subprocess.Popen(
        [
            *lading_command(),
            "gc",
            "--delay",
            "0",
            "--batch-size",
            "1",
            "--data-dir",
            str(server.data_dir),
        ],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Kill as soon as the first blob rows are deleted (startup time varies with load).
    # Manifest payloads live in the database, so the manifest phase has no bytes to
    # delete and runs unpaused; the blob phase pauses between each commit and its
    # byte deletion, which is the window this test is about.
    engine = create_engine(server.extra_env["LADING_DATABASE_URL"])
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                if conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar_one() < blobs_before:
                    break
            time.sleep(0.02)
    finally:
        engine.dispose()
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = time.monotonic()
    assert _runs(server) == [("running", None)]  # nobody can tell it died yet

    usage = lading(server, "usage").stdout
    assert _count(usage, "manifests") == KEPT, usage
    assert KEPT_BLOBS < _count(usage, "blobs") < blobs_before, "the kill did not land mid-run"
    midway = fsck(server)
    # Rows and bytes never disagree: bytes of deleted rows are queued, not orphaned.
    assert midway["clean"], midway
    time.sleep(max(0.0, killed_at + LEASE + 0.5 - time.monotonic()))
    gc(server, "--quiet")
    runs = _runs(server)
    # The next pass marked the killed one abandoned (its lease ran out), then finished.
    assert [status for status, _ in runs] == ["abandoned", "ok"], runs
    assert runs[0][1] is not None and "abandoned" in runs[0][1]
    final = fsck(server)
    assert final["clean"] and final["pending_deletions"] == [], final
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(KEPT):
            verify_image(client, "crash/app", f"v{i}", images[f"v{i}"])
        for i in range(KEPT, IMAGES):
            gone = client.head(f"/v2/crash/app/manifests/{images[f'v{i}'].digest}")
            assert gone.status_code == 404
    usage = lading(server, "usage").stdout
    assert _count(usage, "manifests") == KEPT and _count(usage, "blobs") == KEPT_BLOBS, usage


def _runs(server: RegistryServer) -> list[tuple[str, str | None]]:
    """(status, error) of every ``gc_runs`` row, oldest first."""
    engine = create_engine(server.extra_env["LADING_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT status, error FROM gc_runs ORDER BY id").all()
    finally:
        engine.dispose()
    return [(str(status), error) for status, error in rows]


def _count(usage: str, what: str) -> int:
    """N from the ``  what: N (... bytes)`` line of ``lading usage``."""
    line = next(x for x in usage.splitlines() if x.strip().startswith(f"{what}:"))
    return int(line.split(":")[1].split()[0])
