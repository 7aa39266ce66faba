"""Database-specific behaviour the registry depends on, on both databases."""

from __future__ import annotations

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
