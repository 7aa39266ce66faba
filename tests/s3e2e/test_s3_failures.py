"""S3 failures: Lading refuses to start without usable S3, and answers 503 while S3 is down."""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import httpx
from s3e2e_support import (
    MiB,
    S3Target,
    finish,
    patch,
    push_chunks,
    relaunch_s3,
    start_upload,
    with_digest,
)
from s3servers import free_port
from support.server import RegistryFactory, lading_command, lading_env

START_LIMIT = 45.0  # seconds; mostly interpreter start-up on a loaded machine


def _serve(env: dict[str, str], data_dir: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = [*lading_command(), "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    cmd += ["--data-dir", str(data_dir)]
    started = time.monotonic()
    result = subprocess.run(
        cmd,
        env=lading_env(data_dir, env),
        capture_output=True,
        text=True,
        timeout=START_LIMIT + 30,
        check=False,
    )
    return result, time.monotonic() - started


def test_serve_exits_on_closed_port(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "LADING_STORAGE": "s3",
        "LADING_S3_BUCKET": "anything",
        "LADING_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "LADING_S3_ACCESS_KEY": "a",
        "LADING_S3_SECRET_KEY": "b",
    }
    result, took = _serve(env, tmp_path / "data")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert took < START_LIMIT, f"took {took:.1f}s"
    assert f"cannot reach S3 bucket 'anything' at http://127.0.0.1:{port}" in output, output[-3000:]


def test_serve_exits_on_missing_bucket(s3: S3Target, tmp_path: Path) -> None:
    result, took = _serve(s3.env(LADING_S3_BUCKET="no-such-bucket"), tmp_path / "data")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert took < START_LIMIT, f"took {took:.1f}s"
    assert "bucket 'no-such-bucket'" in output and "does not exist" in output, output[-3000:]


def _assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text[:500]}"
    error = response.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE", f"{what}: {error}"
    assert "S3" in error["message"], f"{what}: {error}"


def test_s3_outage_answers_503_then_recovers(
    own_s3: S3Target, lading_factory: RegistryFactory
) -> None:
    rng = random.Random(8)
    before = rng.randbytes(9 * MiB)
    before_digest = "sha256:" + hashlib.sha256(before).hexdigest()
    server = lading_factory(env=own_s3.env())
    with server.client(timeout=120) as client:
        push_chunks(client, "s3e2e/outage", [before], before_digest)
        pending = start_upload(client, "s3e2e/outage")
        pending = patch(client, pending, 0, before[: 6 * MiB])
        put_pending = start_upload(client, "s3e2e/outage")
        # Every byte acknowledged: only the final, bodyless PUT is left.
        acked_data = rng.randbytes(7 * MiB)
        acked_digest = "sha256:" + hashlib.sha256(acked_data).hexdigest()
        acked = patch(client, start_upload(client, "s3e2e/outage"), 0, acked_data)

        own_s3.server.process.terminate()
        own_s3.server.process.wait(timeout=20)

        blob = f"/v2/s3e2e/outage/blobs/{before_digest}"
        _assert_unavailable(client.get(blob), "blob GET")
        # A POST writes nothing, so it still opens a session; storing into it is refused.
        opened = client.post("/v2/s3e2e/outage/blobs/uploads/")
        assert opened.status_code == 202, opened.text
        _assert_unavailable(client.patch(opened.headers["Location"], content=b"x"), "first PATCH")
        _assert_unavailable(
            client.patch(
                pending,
                content=before[6 * MiB :],
                headers={"Content-Range": f"{6 * MiB}-{9 * MiB - 1}"},
            ),
            "PATCH",
        )
        small = b"tiny blob"
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        _assert_unavailable(
            client.post(
                "/v2/s3e2e/outage/blobs/uploads/", params={"digest": small_digest}, content=small
            ),
            "monolithic POST",
        )
        # The docker/containerd push: the whole blob PUT on an empty session.
        put_small = client.put(with_digest(put_pending, small_digest), content=small)
        _assert_unavailable(put_small, "PUT with body")
        _assert_unavailable(finish(client, acked, acked_digest), "PUT after PATCHes")
        # Metadata-only requests still work.
        assert client.head(blob).status_code == 200
        # Every failure was translated: no request reached the 500 handler.
        assert "unhandled error" not in server.log_tail(200_000), server.log_tail()

        relaunch_s3(own_s3.server)
        if own_s3.kind == "moto":
            own_s3.server.create_bucket(own_s3.bucket)  # moto keeps buckets in memory only
        else:
            # rclone serves a directory: what was stored before the outage is still there.
            response = client.get(blob)
            assert response.status_code == 200
            assert response.content == before
            # The interrupted session resumes where its last durable state ended.
            pending = patch(client, pending, 6 * MiB, before[6 * MiB :])
            done = client.put(pending.copy_merge_params({"digest": before_digest}))
            assert done.status_code == 201, done.text
            # The refused PUT left its session as it was: the client's retry succeeds.
            done = client.put(with_digest(put_pending, small_digest), content=small)
            assert done.status_code == 201, done.text
            # So did the refused commit of a session holding acknowledged bytes.
            done = finish(client, acked, acked_digest)
            assert done.status_code == 201, done.text
            assert client.get(f"/v2/s3e2e/outage/blobs/{acked_digest}").content == acked_data
        after = rng.randbytes(12 * MiB)
        after_digest = "sha256:" + hashlib.sha256(after).hexdigest()
        push_chunks(client, "s3e2e/outage", [after[:5], after[5:]], after_digest)
        response = client.get(f"/v2/s3e2e/outage/blobs/{after_digest}")
        assert response.status_code == 200
        assert response.content == after
