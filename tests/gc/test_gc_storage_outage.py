"""GC reports bytes as freed only once storage deleted them (real rclone S3, stopped)."""

from __future__ import annotations

from pathlib import Path

from gcenv import Env, database_url
from s3servers import ToolMissing, fresh_bucket, s3_driver_for, start_rclone
from support.tools import unavailable

from registry.services.gc import GarbageCollector
from storage.driver import Driver


def _collector(env: Env, driver: Driver) -> GarbageCollector:
    return GarbageCollector(env.db, driver, review_delay=0, upload_purge_after=3600)


def test_failed_deletions_are_not_counted_as_freed(backend: str, tmp_path: Path) -> None:
    data = tmp_path / "s3data"
    try:
        server = start_rclone(data_dir=data)
    except ToolMissing as exc:
        unavailable(f"rclone is not installed: {exc}")
    try:
        bucket = fresh_bucket(server)
        env = Env.create(database_url(backend, tmp_path), s3_driver_for(server, bucket))
        image = env.push_image("app", "v1", [b"layer-a" * 100, b"layer-b" * 200])
        env.manifests.delete("app", "v1")
        server.stop()  # storage down: every deletion fails

        down = env.collector().run()
        assert down.manifests_deleted == 1 and down.blobs_deleted == 3
        # Only the manifest, whose bytes were in its row, is freed.
        assert (down.objects_freed, down.bytes_freed) == (1, image["size"])
        # A pass that retries the deletions while storage is still down frees nothing.
        again = env.collector().run()
        assert (again.objects_freed, again.bytes_freed) == (0, 0)
        queued = env.db.fetch_all("SELECT count(*), sum(size) FROM gc_storage_deletions", {})
        assert queued[0][0] == 3  # config, two layers

        server = start_rclone(data_dir=data)  # same data, a new port
        up = _collector(env, s3_driver_for(server, bucket)).run()
        assert (up.objects_freed, up.bytes_freed) == (3, int(queued[0][1]))
        assert up.bytes_freed > 300 * len(b"layer-a")
        assert env.db.fetch_all("SELECT count(*) FROM gc_storage_deletions", {}) == [(0,)]
        later = _collector(env, s3_driver_for(server, bucket)).run()
        assert (later.objects_freed, later.bytes_freed) == (0, 0)
        env.db.dispose()
    finally:
        server.stop()
