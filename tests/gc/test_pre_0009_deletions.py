"""Storage objects of pre-0009 manifests (bytes in storage) deleted by the v2/admin
DELETE, a repository delete, retention or fsck go through ``gc_storage_deletions``:
queued with the row, so a deletion that fails while storage is down (real rclone S3,
stopped) is retried by the next GC pass instead of leaking the bytes."""

from __future__ import annotations

from pathlib import Path

from gcenv import Env, database_url
from s3servers import ToolMissing, fresh_bucket, s3_driver_for, start_rclone
from support.pre_0009 import move_payload_to_storage
from support.tools import unavailable

from registry.services.admin_catalog import CatalogService
from registry.services.admin_content import ContentReader
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.retention import RetentionService, Rules
from storage.driver import Driver


def _catalog(env: Env, driver: Driver) -> CatalogService:
    content = ContentReader(env.db, driver, env.manifests)
    return CatalogService(env.db, driver, content, UsageService(env.db))


def _old_image(env: Env, repo: str, tag: str) -> tuple[str, str]:
    """Push an image and turn its manifest row into the pre-0009 form: (digest, key)."""
    digest = env.push_image(repo, tag, [f"{repo}:{tag}".encode() * 50])["digest"]
    return digest, move_payload_to_storage(env.db, env.driver, repo, digest)


def _queued(env: Env) -> set[str]:
    return {r[0] for r in env.db.fetch_all("SELECT storage_key FROM gc_storage_deletions", {})}


def test_failed_manifest_object_deletions_are_retried_by_gc(backend: str, tmp_path: Path) -> None:
    data = tmp_path / "s3data"
    try:
        server = start_rclone(data_dir=data)
    except ToolMissing as exc:
        unavailable(f"rclone is not installed: {exc}")
    try:
        bucket = fresh_bucket(server)
        env = Env.create(database_url(backend, tmp_path), s3_driver_for(server, bucket))
        by_digest, by_digest_key = _old_image(env, "api/app", "v1")
        _, whole_repo_key = _old_image(env, "whole/app", "v1")
        _, retained_key = _old_image(env, "ret/app", "old")
        _old_image(env, "ret/app", "new")
        doomed = {by_digest_key, whole_repo_key, retained_key}
        assert doomed <= set(env.driver.list("manifests"))
        server.stop()  # storage down: every byte deletion fails

        env.manifests.delete("api/app", by_digest)
        _catalog(env, env.driver).delete_repository("whole/app", "tester")
        retention = RetentionService(
            env.db, env.driver, _catalog(env, env.driver), AuditService(env.db)
        )
        plan = retention.apply([Rules("keep-1", "ret/*", keep_newest=1)], "tester")
        assert plan.manifest_count == 1
        assert _queued(env) == doomed  # the bytes are owed, not forgotten

        server = start_rclone(data_dir=data)  # same data, a new port
        driver = s3_driver_for(server, bucket)
        assert doomed <= set(driver.list("manifests"))
        GarbageCollector(env.db, driver, review_delay=3600, upload_purge_after=3600).run()
        assert not doomed & set(driver.list("manifests"))
        assert _queued(env) == set()
        env.db.dispose()
    finally:
        server.stop()


def test_deleted_manifest_objects_leave_no_queue_rows(env: Env) -> None:
    """Storage up: the bytes go at once and their queue rows are cleared."""
    digest, key = _old_image(env, "api/app", "v1")
    _, repo_key = _old_image(env, "whole/app", "v1")
    env.manifests.delete("api/app", digest)
    _catalog(env, env.driver).delete_repository("whole/app", "tester")
    assert not {key, repo_key} & set(env.driver.list("manifests"))
    assert _queued(env) == set()
