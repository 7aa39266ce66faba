"""Storage usage per repository: bytes only it references (exclusive) and bytes it shares.

A repository uses a blob when one of its manifests references it; manifest bytes are
always exclusive (each manifest row owns its own copy in storage). Blobs no manifest
references are counted as ``unreferenced``: garbage collection frees them.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.db.engine import Database

# Distinct (repository, blob) pairs reached through manifests, and how many
# repositories reach each blob.
_PER_REPOSITORY = """
WITH used AS (
    SELECT DISTINCT m.repository_id AS repo, mb.blob_digest AS digest
    FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
), counted AS (
    SELECT digest, COUNT(*) AS n FROM used GROUP BY digest
)
SELECT r.name,
       COALESCE(SUM(CASE WHEN c.n = 1 THEN b.size ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN c.n > 1 THEN b.size ELSE 0 END), 0)
FROM used u
JOIN counted c ON c.digest = u.digest
JOIN blobs b ON b.digest = u.digest
JOIN repositories r ON r.id = u.repo
GROUP BY r.name
"""
_MANIFEST_BYTES = (
    "SELECT r.name, COALESCE(SUM(m.size), 0) FROM manifests m"
    " JOIN repositories r ON r.id = m.repository_id GROUP BY r.name"
)
_TOTAL_BLOBS = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs"
_TOTAL_MANIFESTS = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM manifests"
_UNREFERENCED = (
    "SELECT COUNT(*), COALESCE(SUM(b.size), 0) FROM blobs b WHERE NOT EXISTS"
    " (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)"
)


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    name: str
    exclusive_bytes: int
    shared_bytes: int
    manifest_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.exclusive_bytes + self.shared_bytes + self.manifest_bytes


@dataclass(frozen=True, slots=True)
class UsageReport:
    blob_count: int
    blob_bytes: int
    manifest_count: int
    manifest_bytes: int
    unreferenced_blob_count: int
    unreferenced_blob_bytes: int
    repositories: list[RepositoryUsage]

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes


class UsageService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def per_repository(self) -> dict[str, RepositoryUsage]:
        blobs = {str(r[0]): (int(r[1]), int(r[2])) for r in self.db.fetch_all(_PER_REPOSITORY, {})}
        manifests = {str(r[0]): int(r[1]) for r in self.db.fetch_all(_MANIFEST_BYTES, {})}
        result: dict[str, RepositoryUsage] = {}
        for name in sorted(set(blobs) | set(manifests)):
            exclusive, shared = blobs.get(name, (0, 0))
            result[name] = RepositoryUsage(name, exclusive, shared, manifests.get(name, 0))
        return result

    def report(self) -> UsageReport:
        blob_row = self.db.fetch_one(_TOTAL_BLOBS, {}) or (0, 0)
        manifest_row = self.db.fetch_one(_TOTAL_MANIFESTS, {}) or (0, 0)
        loose_row = self.db.fetch_one(_UNREFERENCED, {}) or (0, 0)
        return UsageReport(
            blob_count=int(blob_row[0]),
            blob_bytes=int(blob_row[1]),
            manifest_count=int(manifest_row[0]),
            manifest_bytes=int(manifest_row[1]),
            unreferenced_blob_count=int(loose_row[0]),
            unreferenced_blob_bytes=int(loose_row[1]),
            repositories=list(self.per_repository().values()),
        )
