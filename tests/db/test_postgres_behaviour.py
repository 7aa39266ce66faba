"""Database-specific behaviour the registry depends on, on both databases."""

from __future__ import annotations

from sqlalchemy import text

from registry.db import migrate
from registry.db.engine import Database
from registry.domain.pagination import Page
from registry.services.listing import ListingService


def test_tags_and_catalog_are_byte_wise(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        names = ["b", "B", "a", "_z", "A-1", "a.b"]
        with db.transaction() as conn:
            for i, name in enumerate(names):
                repo = f"r{name.lower().replace('_', 'x').replace('.', 'd')}{i}"
                conn.exec_driver_sql(
                    "INSERT INTO repositories (id, name, created_at) VALUES"
                    f" ({i + 1}, '{repo}', CURRENT_TIMESTAMP)"
                )
                conn.exec_driver_sql(
                    "INSERT INTO manifests (id, repository_id, digest, media_type, size,"
                    f" storage_key, created_at) VALUES ({i + 1}, {i + 1}, 'sha256:{i}', 'x', 1,"
                    f" 'k{i}', CURRENT_TIMESTAMP)"
                )
                conn.exec_driver_sql(
                    "INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
                    f" VALUES (1, '{name}', {i + 1}, CURRENT_TIMESTAMP)"
                )
        listing = ListingService(db, 100)
        first = ListingService(db, 100).tags("rb0", Page(limit=3, last=None))
        assert first.items == sorted(names, key=str.encode)[:3]
        rest = listing.tags("rb0", Page(limit=10, last=first.next_last))
        assert first.items + rest.items == sorted(names, key=str.encode)
        catalog = listing.repositories(Page(limit=100, last=None)).items
        assert catalog == sorted(catalog, key=str.encode) and len(catalog) == len(names)
    finally:
        db.dispose()


def test_pooled_connections_ended_by_the_server_are_replaced(database_url: str) -> None:
    """A server restart ends every pooled connection: the next reads and writes
    must get fresh connections, not errors (the pool does no pre-ping)."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        # Fill the pool with several idle connections.
        pooled = [db.engine.raw_connection() for _ in range(4)]
        for raw in pooled:
            raw.close()
        assert db.fetch_one("SELECT 1", {}) == (1,)
        if not db.is_sqlite:
            admin = Database(database_url)
            try:
                with admin.transaction() as conn:
                    ended = conn.exec_driver_sql(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM"
                        " pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()) AS t"
                    ).scalar_one()
                assert ended >= 1
            finally:
                admin.dispose()
        for _ in range(6):
            assert db.fetch_one("SELECT 1", {}) == (1,)
        assert db.fetch_all("SELECT name FROM repositories", {}) == []
        db.run_raw(
            lambda tx: tx.run(
                "INSERT INTO repositories (name, created_at) VALUES (:n, CURRENT_TIMESTAMP)",
                {"n": "after-restart"},
            )
        )
        with db.write() as session:
            session.execute(text("SELECT 1"))
        assert db.fetch_all("SELECT name FROM repositories", {}) == [("after-restart",)]
    finally:
        db.dispose()


def test_reads_leave_pooled_connections_transactional(database_url: str) -> None:
    """Quick reads run in autocommit mode; the connection must go back to the pool
    in transactional mode even when the read fails."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        try:
            db.fetch_one("SELECT * FROM no_such_table", {})
        except Exception:
            pass
        else:
            raise AssertionError("a query on a missing table succeeded")
        # Every pooled connection (the failed read's among them) is transactional.
        held = [db.engine.raw_connection() for _ in range(8)]
        try:
            for conn in held:
                assert not getattr(conn.driver_connection, "autocommit", False)
        finally:
            for conn in held:
                conn.close()
        assert db.fetch_one("SELECT 1", {}) == (1,)
    finally:
        db.dispose()
