"""Migrations round-trip and agree with the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.exc import IntegrityError

from registry.db import migrate
from registry.db.engine import Database
from registry.db.models import Base


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        assert migrate.is_up_to_date(db)
        assert {"manifests", "gc_blob_reviews", "gc_runs"} <= _tables(db)
        migrate.downgrade(db, "base")
        assert migrate.current(db) is None
        assert _tables(db) == set()
        migrate.upgrade(db)
        assert migrate.current(db) == migrate.head()
    finally:
        db.dispose()


def _metadata() -> list[MetaData]:
    found = [Base.metadata]
    try:  # auth's models join once that package defines them (as in migrations/env.py)
        from auth.models import AuthBase

        found.append(AuthBase.metadata)
    except ImportError:
        pass
    return found


def test_models_match_migrations(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            # Compare against all metadata at once, as migrations/env.py does.
            assert compare_metadata(context, _metadata()) == []  # type: ignore[arg-type]
    finally:
        db.dispose()


def test_migrate_command(database_url: str, tmp_path: Path) -> None:
    lading = [sys.executable, "-m", "registry.cli"]
    env = {**os.environ, "LADING_DATABASE_URL": database_url}
    data = ["--data-dir", str(tmp_path)]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*lading, "migrate", *args, *data], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert run("upgrade") == migrate.head()
    assert run("current") == migrate.head()
    assert run("downgrade", "base") == "base"
    assert run("upgrade", "0002") == "0002"


def test_gc_queue_migration_keeps_pending_reviews(database_url: str) -> None:
    """0007 turns the one-row-per-object review queues into append-only event
    queues and back, keeping every pending review (downgrade keeps the newest)."""
    db = Database(database_url)
    try:
        migrate.upgrade(db, "0006")
        with db.transaction() as conn:
            conn.exec_driver_sql(
                "INSERT INTO gc_blob_reviews (digest, event_at, event)"
                " VALUES ('sha256:a', 10.0, 'link'), ('sha256:b', 20.0, 'unlink')"
            )
        migrate.upgrade(db)
        rows = db.fetch_all("SELECT digest, event_at FROM gc_blob_reviews ORDER BY digest", {})
        assert rows == [("sha256:a", 10.0), ("sha256:b", 20.0)]
        with db.transaction() as conn:  # events for one blob may now repeat
            conn.exec_driver_sql(
                "INSERT INTO gc_blob_reviews (digest, event_at, event)"
                " VALUES ('sha256:a', 30.0, 'unlink'), ('sha256:a', 5.0, 'link')"
            )
        migrate.downgrade(db, "0006")
        rows = db.fetch_all("SELECT digest, event_at FROM gc_blob_reviews ORDER BY digest", {})
        assert rows == [("sha256:a", 30.0), ("sha256:b", 20.0)]
    finally:
        db.dispose()


def _review_events(db: Database, table: str) -> int:
    return int(db.fetch_all(f"SELECT count(*) FROM {table}", {})[0][0])


def test_manifest_payload_migration_keeps_rows_and_triggers(database_url: str) -> None:
    """0009 rebuilds ``manifests`` on SQLite: rows referencing it survive (no
    cascade), its GC triggers come back, the CHECK holds, and downgrade refuses
    while a manifest lives only in the database."""
    db = Database(database_url)
    try:
        migrate.upgrade(db, "0008")
        with db.transaction() as conn:
            for sql in (
                "INSERT INTO repositories (id, name, created_at)"
                " VALUES (1, 'r', CURRENT_TIMESTAMP)",
                "INSERT INTO blobs (digest, size, storage_key, created_at)"
                " VALUES ('sha256:b', 1, 'blobs/b', CURRENT_TIMESTAMP)",
                "INSERT INTO manifests (id, repository_id, digest, media_type, size, storage_key,"
                " created_at) VALUES (1, 1, 'sha256:m', 'x', 1, 'manifests/m', CURRENT_TIMESTAMP)",
                "INSERT INTO manifest_blobs (manifest_id, blob_digest) VALUES (1, 'sha256:b')",
                "INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
                " VALUES (1, 't', 1, CURRENT_TIMESTAMP)",
            ):
                conn.exec_driver_sql(sql)
        migrate.upgrade(db)
        assert db.fetch_all("SELECT name, manifest_id FROM tags", {}) == [("t", 1)]
        assert db.fetch_all("SELECT manifest_id FROM manifest_blobs", {}) == [(1,)]
        assert db.fetch_all("SELECT storage_key, payload FROM manifests", {}) == [
            ("manifests/m", None)
        ]
        insert = text(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, storage_key,"
            " payload, created_at) VALUES (2, 1, 'sha256:n', 'x', 2, :key, :payload,"
            " CURRENT_TIMESTAMP)"
        )
        for key, payload in ((None, None), ("manifests/n", b"{}")):
            with pytest.raises(IntegrityError), db.transaction() as conn:
                conn.execute(insert, {"key": key, "payload": payload})
        pushes = _review_events(db, "gc_manifest_reviews")
        with db.transaction() as conn:  # the push trigger is back
            conn.execute(insert, {"key": None, "payload": b"{}"})
        assert _review_events(db, "gc_manifest_reviews") == pushes + 1
        with pytest.raises(Exception, match="stored only in the database"):
            migrate.downgrade(db, "0008")
        assert migrate.current(db) == migrate.head()
        unlinks = _review_events(db, "gc_blob_reviews")
        with db.transaction() as conn:  # and so is the delete trigger
            conn.exec_driver_sql("DELETE FROM manifests WHERE id = 2")
            conn.exec_driver_sql("DELETE FROM manifests WHERE id = 1")
        assert _review_events(db, "gc_blob_reviews") == unlinks + 1
        assert db.fetch_all("SELECT name FROM tags", {}) == []
        migrate.downgrade(db, "0008")
        pushes = _review_events(db, "gc_manifest_reviews")
        with db.transaction() as conn:  # 0008's schema and triggers again
            conn.exec_driver_sql(
                "INSERT INTO manifests (id, repository_id, digest, media_type, size,"
                " storage_key, created_at) VALUES (3, 1, 'sha256:o', 'x', 1, 'manifests/o',"
                " CURRENT_TIMESTAMP)"
            )
        assert _review_events(db, "gc_manifest_reviews") == pushes + 1
        migrate.upgrade(db)
    finally:
        db.dispose()
