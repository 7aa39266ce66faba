"""Storage usage for the admin API, on top of ``registry.services.usage`` (the same
accounting ``lading usage`` prints): per repository the blob bytes only it holds
(exclusive) and those it shares, plus blobs no manifest references, which garbage
collection frees once their grace period has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.db.engine import Database
from registry.services.usage import space_report

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
        return {r.name: r for r in self.report().repositories}

    def report(self) -> UsageReport:
        space = space_report(self.db)
        loose_row = self.db.fetch_one(_UNREFERENCED, {}) or (0, 0)
        return UsageReport(
            blob_count=space.blob_count,
            blob_bytes=space.blob_bytes,
            manifest_count=space.manifest_count,
            manifest_bytes=space.manifest_bytes,
            unreferenced_blob_count=int(loose_row[0]),
            unreferenced_blob_bytes=int(loose_row[1]),
            repositories=[
                RepositoryUsage(r.name, r.exclusive_bytes, r.shared_bytes, r.manifest_bytes)
                for r in space.repositories
            ],
        )
