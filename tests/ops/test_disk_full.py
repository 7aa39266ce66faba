"""A full disk under the data directory: clear 507 answers, nothing acknowledged lost.

A real ``lading serve`` runs with its data directory on a small tmpfs; a filler file
takes the last free byte, pushes must fail with STORAGE_FULL (not a 500), pulls keep
working, and once the filler is gone the interrupted upload completes and ``lading fsck``
finds nothing leaked. Mounting needs root: under ``CI=true`` not being able to mount fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.blob_push import push_blob
from support.postgres import wants_postgres
from support.server import RegistryServer, lading_command, lading_env, start_lading
from support.tmpfs import MIB, fill, free_bytes, small_disk

REPO = "full/app"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(params=["database-on-disk", "database-elsewhere"])
def small_disk_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RegistryServer]:
    """``lading serve`` whose data directory is a 64 MiB tmpfs (logs stay outside it).

    With ``database-elsewhere`` the SQLite file lives off the tmpfs, so a full disk reaches
    the storage driver's writes rather than stopping at the database's first commit.
    """
    data_dir = tmp_path / "data"
    env = {}
    if request.param == "database-elsewhere" and not wants_postgres():
        env["LADING_DATABASE_URL"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with small_disk(data_dir, 64):
        server = start_lading(tmp_path, env=env, ready_timeout=30)
        try:
            yield server
        finally:
            server.stop()


def _assert_storage_full(response: httpx.Response) -> None:
    assert response.status_code == 507, (response.status_code, response.text)
    codes = [error["code"] for error in response.json()["errors"]]
    assert codes == ["STORAGE_FULL"], response.text


def _start(client: httpx.Client) -> str:
    started = client.post(f"/v2/{REPO}/blobs/uploads/")
    assert started.status_code == 202, started.text
    return str(started.headers["Location"])


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _manifest(config: str, config_size: int, layer: str, layer_size: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer,
                    "size": layer_size,
                }
            ],
        }
    ).encode()


def _put_manifest(client: httpx.Client, tag: str, body: bytes) -> httpx.Response:
    return client.put(
        f"/v2/{REPO}/manifests/{tag}", content=body, headers={"Content-Type": MANIFEST_TYPE}
    )


def test_full_disk_refuses_pushes_keeps_pulls_and_recovers(
    small_disk_server: RegistryServer,
) -> None:
    server = small_disk_server
    # A database on the full disk refuses the first write; else the storage driver does.
    database_full = not wants_postgres() and "LADING_DATABASE_URL" not in server.extra_env
    # Leave some space when only storage is full: requests then fail part way through.
    spare = 0 if database_full else MIB
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(MIB)
    first, second = os.urandom(MIB), os.urandom(3 * MIB)
    whole_digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    single = os.urandom(2 * MIB)
    single_digest = "sha256:" + hashlib.sha256(single).hexdigest()
    filler = server.data_dir / "filler"

    with server.client(timeout=30) as client:
        config_digest = push_blob(client, REPO, config)
        layer_digest = push_blob(client, REPO, layer)
        pushed = _manifest(config_digest, len(config), layer_digest, len(layer))
        assert _put_manifest(client, "v1", pushed).status_code == 201
        chunked = client.patch(
            _start(client), content=first, headers={"Content-Range": f"0-{len(first) - 1}"}
        )
        assert chunked.status_code == 202, chunked.text
        chunked_at = chunked.headers["Location"]
        put_with_body_at = _start(client)

        fill(filler, spare)
        free_before = free_bytes(server.data_dir)
        try:
            # Chunked PATCH: refused, and the upload keeps exactly its acknowledged bytes.
            failed = client.patch(
                chunked_at,
                content=second,
                headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"},
            )
            _assert_storage_full(failed)
            # The bytes the failed request did store were given back.
            assert free_bytes(server.data_dir) >= free_before
            status = client.get(chunked_at)
            assert status.status_code == 204, status.text
            assert status.headers["Range"] == f"0-{len(first) - 1}"
            # PUT with the whole body, and the monolithic POST ?digest=.
            _assert_storage_full(
                client.put(_with_digest(put_with_body_at, single_digest), content=single)
            )
            # The refused PUT leaves its session as it was, so the client's retry finds it.
            status = client.get(put_with_body_at)
            assert status.status_code == 204, status.text
            assert status.headers["Range"] == "0-0"
            _assert_storage_full(
                client.post(f"/v2/{REPO}/blobs/uploads/?digest={single_digest}", content=single)
            )
            assert free_bytes(server.data_dir) >= free_before
            if database_full:
                # The database shares the disk: what it cannot commit is refused as clearly.
                manifest = _manifest(config_digest, len(config), layer_digest, len(layer))
                _assert_storage_full(_put_manifest(client, "v2", manifest + b" "))
                # A POST writes nothing, so it still opens a session; its PUT is refused.
                opened = _start(client)
                _assert_storage_full(
                    client.put(_with_digest(opened, single_digest), content=single)
                )
                assert client.get(opened).status_code == 204
            # Pulls keep working.
            got = client.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST_TYPE})
            assert got.status_code == 200 and got.content == pushed
            blob = client.get(f"/v2/{REPO}/blobs/{layer_digest}")
            assert blob.status_code == 200 and blob.content == layer
            assert server.process.poll() is None, server.log_tail()
        finally:
            filler.unlink()

        # Space is back: the interrupted uploads continue and complete.
        resumed = client.patch(
            chunked_at,
            content=second,
            headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"},
        )
        assert resumed.status_code == 202, resumed.text
        done = client.put(_with_digest(resumed.headers["Location"], whole_digest))
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/{REPO}/blobs/{whole_digest}").content == first + second
        retried = client.put(_with_digest(put_with_body_at, single_digest), content=single)
        assert retried.status_code == 201, retried.text
        again = _manifest(config_digest, len(config), whole_digest, len(first + second))
        assert _put_manifest(client, "v2", again).status_code == 201

    server.stop()
    if database_full:
        with contextlib.closing(sqlite3.connect(server.data_dir / "lading.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    fsck = subprocess.run(
        [*lading_command(), "fsck", "--data-dir", str(server.data_dir)],
        env=lading_env(server.data_dir, server.extra_env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert not list((server.data_dir / "storage" / "_uploads").iterdir())


def test_full_disk_stays_ready_and_restarts(small_disk_server: RegistryServer) -> None:
    """Pulls still work on a full disk, so readiness stays up (saying so) and so does a restart."""
    server = small_disk_server
    layer = os.urandom(MIB)
    filler = server.data_dir / "filler"
    with server.client(timeout=30) as client:
        layer_digest = push_blob(client, REPO, layer)
    fill(filler, 0)
    restarted: RegistryServer | None = None
    try:
        with server.client(timeout=30) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["storage"] == "full"
        server.stop()
        restarted = start_lading(server.data_dir.parent, env=server.extra_env, ready_timeout=30)
        with restarted.client(timeout=30) as client:
            blob = client.get(f"/v2/{REPO}/blobs/{layer_digest}")
            assert blob.status_code == 200 and blob.content == layer
            other = os.urandom(MIB)
            other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
            _assert_storage_full(
                client.post(f"/v2/{REPO}/blobs/uploads/?digest={other_digest}", content=other)
            )
    finally:
        if restarted is not None:
            restarted.stop()
        filler.unlink()


def test_streamed_bodies_fail_part_way_and_give_back_their_space(
    small_disk_server: RegistryServer,
) -> None:
    """Bodies over 4 MiB are written while later buffers still arrive; a write that fails
    part way must answer 507, drop what it wrote and leave the session as acknowledged."""
    server = small_disk_server
    first, rest = os.urandom(MIB), os.urandom(24 * MIB)
    digest = "sha256:" + hashlib.sha256(first + rest).hexdigest()
    filler = server.data_dir / "filler"
    with server.client(timeout=60) as client:
        at = _start(client)
        done = client.patch(at, content=first, headers={"Content-Range": f"0-{MIB - 1}"})
        assert done.status_code == 202, done.text
        at = done.headers["Location"]
        # The whole body in one PUT opens its own upload: it too must leave nothing.
        whole_at = _start(client)
        fill(filler, 2 * MIB)
        try:
            end = MIB + len(rest) - 1
            _assert_storage_full(
                client.patch(at, content=rest, headers={"Content-Range": f"{MIB}-{end}"})
            )
            _assert_storage_full(client.put(_with_digest(whole_at, digest), content=first + rest))
            # Without a Content-Length (chunked transfer encoding) the same.
            _assert_storage_full(client.patch(at, content=iter([rest[:MIB], rest[MIB:]])))
            # Storage holds only the session's acknowledged bytes (the database's lease
            # commits may take a few pages of the disk).
            stored = [p for p in (server.data_dir / "storage").rglob("*") if p.is_file()]
            assert [p.stat().st_size for p in stored] == [MIB], stored
            status = client.get(at)
            assert status.status_code == 204, status.text
            assert status.headers["Range"] == f"0-{MIB - 1}"
            assert server.process.poll() is None, server.log_tail()
        finally:
            filler.unlink()
        finished = client.put(_with_digest(at, digest), content=rest)
        assert finished.status_code == 201, finished.text
        assert client.get(f"/v2/{REPO}/blobs/{digest}").content == first + rest
