"""Space accounting: total stored bytes, and per repository the blob bytes only
it holds (exclusive) and those it shares with other repositories.

A repository holds a blob while it links it (``repository_blobs``) or one of its
manifests references it: either keeps the bytes from being collected. Manifest
bytes always belong to one repository (each row has its own stored copy).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.db.engine import Database

_HELD = """
WITH held AS (
    SELECT repository_id AS repo, blob_digest AS digest FROM repository_blobs
    UNION
    SELECT m.repository_id, mb.blob_digest FROM manifest_blobs mb
    JOIN manifests m ON m.id = mb.manifest_id
), holders AS (
    SELECT digest, COUNT(*) AS n FROM held GROUP BY digest
)
SELECT r.name,
       COALESCE(SUM(CASE WHEN h.n = 1 THEN b.size ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN h.n > 1 THEN b.size ELSE 0 END), 0)
FROM held x
JOIN holders h ON h.digest = x.digest
JOIN blobs b ON b.digest = x.digest
JOIN repositories r ON r.id = x.repo
GROUP BY r.name
"""
_MANIFESTS = (
    "SELECT r.name, COALESCE(SUM(m.size), 0) FROM manifests m"
    " JOIN repositories r ON r.id = m.repository_id GROUP BY r.name"
)
_TOTALS = (
    "SELECT (SELECT COUNT(*) FROM blobs), (SELECT COALESCE(SUM(size), 0) FROM blobs),"
    " (SELECT COUNT(*) FROM manifests), (SELECT COALESCE(SUM(size), 0) FROM manifests)"
)


@dataclass(frozen=True, slots=True)
class RepositorySpace:
    name: str
    exclusive_bytes: int
    shared_bytes: int
    manifest_bytes: int


@dataclass(frozen=True, slots=True)
class SpaceReport:
    blob_count: int
    blob_bytes: int
    manifest_count: int
    manifest_bytes: int
    repositories: list[RepositorySpace]

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.manifest_bytes


def space_report(db: Database) -> SpaceReport:
    blobs = {str(r[0]): (int(r[1]), int(r[2])) for r in db.fetch_all(_HELD, {})}
    manifests = {str(r[0]): int(r[1]) for r in db.fetch_all(_MANIFESTS, {})}
    repositories = [
        RepositorySpace(name, *blobs.get(name, (0, 0)), manifests.get(name, 0))
        for name in sorted(blobs.keys() | manifests.keys(), key=str.encode)
    ]
    totals = db.fetch_one(_TOTALS, {})
    assert totals is not None
    blob_count, blob_bytes, manifest_count, manifest_bytes = (int(v) for v in totals)
    return SpaceReport(blob_count, blob_bytes, manifest_count, manifest_bytes, repositories)
