"""Repositories, tags and manifests as administrators see them: sizes, platforms, times."""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from registry.db.engine import Database
from registry.db.models import Blob, Manifest, ManifestBlob, ManifestReference, Repository, Tag
from registry.domain.errors import NAME_UNKNOWN, RegistryError
from registry.domain.manifests import INDEX_TYPES
from registry.services import storage_deletions
from registry.services.admin_content import ContentReader
from registry.services.admin_usage import RepositoryUsage, UsageService
from registry.services.audit import AuditService
from registry.services.manifests import ManifestRecord
from storage.driver import Driver


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    name: str
    created_at: dt.datetime
    last_push_at: dt.datetime | None
    tag_count: int
    manifest_count: int
    usage: RepositoryUsage


@dataclass(slots=True)
class ManifestInfo:
    id: int
    digest: str
    media_type: str
    artifact_type: str | None
    manifest_size: int
    storage_key: str | None  # None: the bytes are in the row (migration 0009)
    config_digest: str | None
    subject_digest: str | None
    pushed_at: dt.datetime
    last_pulled_at: dt.datetime | None
    tags: list[str] = field(default_factory=list)
    # Distinct config/layer blobs (own, plus children's for an index) with sizes.
    blobs: dict[str, int] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def record(self) -> ManifestRecord:
        return ManifestRecord(
            self.id,
            self.digest,
            self.media_type,
            self.manifest_size,
            self.storage_key,
            self.subject_digest,
        )


@dataclass(frozen=True, slots=True)
class TagInfo:
    name: str
    updated_at: dt.datetime
    manifest: ManifestInfo


@dataclass(frozen=True, slots=True)
class RepositoryContents:
    repository_id: int
    manifests: dict[str, ManifestInfo]
    tags: list[TagInfo]


def name_matches(name: str, pattern: str | None) -> bool:
    """A glob (``team/*``) matches whole names; plain text matches as a substring."""
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


class CatalogService:
    def __init__(
        self, db: Database, driver: Driver, content: ContentReader, usage: UsageService
    ) -> None:
        self.db = db
        self.driver = driver
        self.content = content
        self.usage = usage

    # -- repositories ----------------------------------------------------------
    def repositories(self, pattern: str | None = None) -> list[RepositorySummary]:
        tag_counts = select(Tag.repository_id, func.count().label("n")).group_by(Tag.repository_id)
        manifest_counts = select(Manifest.repository_id, func.count().label("n")).group_by(
            Manifest.repository_id
        )
        with self.db.read_snapshot() as session:
            repos = session.execute(
                select(
                    Repository.id, Repository.name, Repository.created_at, Repository.last_push_at
                )
            ).all()
            tags = {int(r[0]): int(r[1]) for r in session.execute(tag_counts)}
            manifests = {int(r[0]): int(r[1]) for r in session.execute(manifest_counts)}
        usage = self.usage.per_repository()
        result = []
        for repo in repos:
            if not name_matches(repo.name, pattern):
                continue
            result.append(
                RepositorySummary(
                    name=repo.name,
                    created_at=repo.created_at,
                    last_push_at=repo.last_push_at,
                    tag_count=tags.get(repo.id, 0),
                    manifest_count=manifests.get(repo.id, 0),
                    usage=usage.get(repo.name, RepositoryUsage(repo.name, 0, 0, 0)),
                )
            )
        return result

    def repository(self, name: str) -> RepositorySummary:
        for summary in self.repositories(name if not any(c in name for c in "*?[") else None):
            if summary.name == name:
                return summary
        raise RegistryError(NAME_UNKNOWN, detail={"name": name})

    def delete_repository(self, name: str, actor: str) -> dict[str, int]:
        """Remove the repository with its tags, manifests and blob links; GC frees blobs."""
        # PostgreSQL may pick this transaction as a deadlock victim: run it again.
        result, keys = self.db.write_retrying(lambda s: self._delete_repository(s, name, actor))
        # Each pre-0009 manifest row owns its own copy of the bytes (see
        # ManifestService.delete), queued for deletion with the row.
        storage_deletions.delete_now(self.db, self.driver, keys)
        return result

    @staticmethod
    def _delete_repository(
        session: Session, name: str, actor: str
    ) -> tuple[dict[str, int], list[str]]:
        # Lock the repository row first, as pushes do (FOR KEY SHARE): a push in
        # progress finishes before we delete, a new one waits for us.
        repo_id = session.scalar(
            select(Repository.id).where(Repository.name == name).with_for_update()
        )
        if repo_id is None:
            raise RegistryError(NAME_UNKNOWN, detail={"name": name})
        tag_count = session.scalar(
            select(func.count()).select_from(Tag).where(Tag.repository_id == repo_id)
        )
        # Explicit deletes (not only FK cascades) so GC review triggers see each row.
        session.execute(delete(Tag).where(Tag.repository_id == repo_id))
        manifests = session.execute(
            delete(Manifest)
            .where(Manifest.repository_id == repo_id)
            .returning(Manifest.storage_key, Manifest.size)
        ).all()
        session.execute(delete(Repository).where(Repository.id == repo_id))
        stored = [(str(key), int(size)) for key, size in manifests if key is not None]
        storage_deletions.queue(session, stored)
        result = {"tags_deleted": int(tag_count or 0), "manifests_deleted": len(manifests)}
        AuditService.add(session, actor, "repository.delete", name, dict(result))
        return result, [key for key, _ in stored]

    # -- contents --------------------------------------------------------------
    def contents(self, name: str, *, platforms: bool = True) -> RepositoryContents:
        # One snapshot for the four SELECTs: a push between them must not leave rows
        # whose manifest the first one did not see.
        with self.db.read_snapshot() as session:
            repo_id = session.scalar(select(Repository.id).where(Repository.name == name))
            if repo_id is None:
                raise RegistryError(NAME_UNKNOWN, detail={"name": name})
            rows = session.execute(
                select(
                    Manifest.id,
                    Manifest.digest,
                    Manifest.media_type,
                    Manifest.artifact_type,
                    Manifest.size,
                    Manifest.storage_key,
                    Manifest.config_digest,
                    Manifest.subject_digest,
                    Manifest.created_at,
                    Manifest.last_pulled_at,
                ).where(Manifest.repository_id == repo_id)
            ).all()
            blob_rows = session.execute(
                select(ManifestBlob.manifest_id, Blob.digest, Blob.size)
                .join(Blob, Blob.digest == ManifestBlob.blob_digest)
                .join(Manifest, Manifest.id == ManifestBlob.manifest_id)
                .where(Manifest.repository_id == repo_id)
            ).all()
            ref_rows = session.execute(
                select(ManifestReference.parent_id, ManifestReference.child_digest)
                .join(Manifest, Manifest.id == ManifestReference.parent_id)
                .where(Manifest.repository_id == repo_id)
            ).all()
            tag_rows = session.execute(
                select(Tag.name, Tag.manifest_id, Tag.updated_at).where(
                    Tag.repository_id == repo_id
                )
            ).all()
        by_id: dict[int, ManifestInfo] = {}
        for r in rows:
            by_id[r.id] = ManifestInfo(
                id=r.id,
                digest=r.digest,
                media_type=r.media_type,
                artifact_type=r.artifact_type,
                manifest_size=r.size,
                storage_key=r.storage_key,
                config_digest=r.config_digest,
                subject_digest=r.subject_digest,
                pushed_at=r.created_at,
                last_pulled_at=r.last_pulled_at,
            )
        for manifest_id, digest, size in blob_rows:
            by_id[manifest_id].blobs[digest] = int(size)
        for parent_id, child in ref_rows:
            by_id[parent_id].children.append(child)
        by_digest = {m.digest: m for m in by_id.values()}
        tags: list[TagInfo] = []
        for tag_name, manifest_id, updated_at in tag_rows:
            info = by_id[manifest_id]
            info.tags.append(tag_name)
            tags.append(TagInfo(tag_name, updated_at, info))
        for info in by_digest.values():
            self._size(info, by_digest)
            if platforms:
                info.platforms = self._platforms(info)
        tags.sort(key=lambda t: t.name)
        return RepositoryContents(repo_id, by_digest, tags)

    @staticmethod
    def _size(info: ManifestInfo, by_digest: dict[str, ManifestInfo]) -> None:
        """Manifest bytes plus distinct config/layer bytes (an index adds its children's)."""
        blobs = dict(info.blobs)
        total = info.manifest_size
        for child_digest in info.children:
            child = by_digest.get(child_digest)
            if child is not None:
                total += child.manifest_size
                blobs.update(child.blobs)
        info.size = total + sum(blobs.values())

    def _platforms(self, info: ManifestInfo) -> list[str]:
        try:
            if info.is_index:
                return self.content.index_platforms(info.record())
            if info.config_digest:
                found = self.content.config_platform(info.config_digest)
                return [found] if found else []
        except RegistryError:
            return []
        return []
