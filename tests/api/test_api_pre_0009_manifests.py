"""A registry upgraded from revision 0008 keeps serving manifests whose bytes are in
storage, while new pushes keep theirs in the database (migration 0009)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.pre_0009 import move_payload_to_storage
from support.server import RegistryFactory, lading_command, lading_env, start_lading
from v2client import push_image

from registry.db import migrate
from registry.db.engine import Database
from registry.services.manifest_export import store_manifest
from storage.filesystem import FilesystemDriver


def _database_url(data_dir: Path) -> str:
    env = lading_env(data_dir)
    return env.get("LADING_DATABASE_URL") or f"sqlite:///{(data_dir / 'lading.db').resolve()}"


def test_manifest_stored_before_0009_still_serves(lading_factory: RegistryFactory) -> None:
    first = lading_factory(args=["--workers", "1"])
    repo = "api/pre-0009"
    with first.client() as client:
        old = push_image(client, repo, "old", seed=9).manifest
    first.stop()

    # Make it an 0008 registry whose manifest bytes are in storage, as 0008 wrote them.
    driver = FilesystemDriver(first.data_dir / "storage")
    db = Database(_database_url(first.data_dir))
    try:
        key = move_payload_to_storage(db, driver, repo, old.digest)
        migrate.downgrade(db, "0008")
    finally:
        db.dispose()

    second = start_lading(first.data_dir.parent, args=["--workers", "1"])  # migrates to head
    lading_factory.servers.append(second)
    with second.client() as client:
        new = push_image(client, repo, "new", seed=10).manifest
        assert list(driver.list("manifests")) == [key]  # the new one is in its row
        for manifest, references in ((old, ("old", old.digest)), (new, ("new", new.digest))):
            for reference in references:
                got = client.get(f"/v2/{repo}/manifests/{reference}")
                assert got.status_code == 200, got.text
                assert got.content == manifest.data
                assert got.headers["Docker-Content-Digest"] == manifest.digest
                head = client.head(f"/v2/{repo}/manifests/{reference}")
                assert head.status_code == 200 and head.content == b""
                assert head.headers["Content-Length"] == str(manifest.size)
        deleted = client.delete(f"/v2/{repo}/manifests/{old.digest}")
        assert deleted.status_code == 202, deleted.text
        assert client.get(f"/v2/{repo}/manifests/old").status_code == 404
    assert list(driver.list("manifests")) == []  # its object went with the row


def _migrate(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lading_command(), "migrate", *args, "--data-dir", str(data_dir)],
        env=lading_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_store_manifests_makes_a_downgrade_below_0009_possible(
    lading_factory: RegistryFactory,
) -> None:
    first = lading_factory(args=["--workers", "1"])
    repo = "api/store-manifests"
    with first.client() as client:
        pushed = [push_image(client, repo, f"t{i}", seed=20 + i).manifest for i in range(3)]
    first.stop()
    data_dir = first.data_dir
    driver = FilesystemDriver(data_dir / "storage")

    refused = _migrate(data_dir, "downgrade", "0008")
    assert refused.returncode == 2
    assert "lading migrate store-manifests" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert _migrate(data_dir, "current").stdout.strip() == migrate.head()  # nothing changed

    stored = _migrate(data_dir, "store-manifests")
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert "stored 3 manifest(s)" in stored.stdout and "0 still held" in stored.stdout
    assert len(list(driver.list("manifests"))) == 3
    again = _migrate(data_dir, "store-manifests")  # nothing left to do
    assert again.returncode == 0 and "stored 0 manifest(s)" in again.stdout, again.stdout

    downgraded = _migrate(data_dir, "downgrade", "0008")
    assert downgraded.returncode == 0, downgraded.stderr
    assert downgraded.stdout.strip() == "0008"

    second = start_lading(data_dir.parent, args=["--workers", "1"])  # migrates to head again
    lading_factory.servers.append(second)
    with second.client() as client:
        for i, manifest in enumerate(pushed):
            for reference in (f"t{i}", manifest.digest):
                got = client.get(f"/v2/{repo}/manifests/{reference}")
                assert got.status_code == 200, got.text
                assert got.content == manifest.data
                assert got.headers["Docker-Content-Digest"] == manifest.digest


def test_store_manifest_leaves_nothing_for_a_row_gone_meanwhile(
    lading_factory: RegistryFactory,
) -> None:
    server = lading_factory(args=["--workers", "1"])
    server.stop()
    driver = FilesystemDriver(server.data_dir / "storage")
    db = Database(_database_url(server.data_dir))
    try:
        assert store_manifest(db, driver, 10**9, "sha256:" + "ab" * 32, b"{}") is None
    finally:
        db.dispose()
    assert list(driver.list("manifests")) == []
