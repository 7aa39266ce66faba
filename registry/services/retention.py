"""Retention policies: which tags and manifests may go, what that frees, and doing it.

A tag goes when every policy matching its repository lets it go (a policy with only
``delete_untagged`` has no say on tags): it is not among the
newest ``keep_newest`` (by push time), does not fully match ``keep_regex`` and, if
``delete_older_than_days`` is set, is older than that. A manifest goes when nothing left
reaches it: no surviving tag, no surviving index listing it as a child, and no surviving
manifest it is a referrer of. Manifests that were already untagged stay unless a policy
says ``delete_untagged``. The bytes freed are the manifests' own bytes plus blobs that
only the departing manifests reference (garbage collection then deletes those blobs).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from registry.db.engine import Database, rows_affected
from registry.db.models import (
    Manifest,
    ManifestBlob,
    ManifestReference,
    Repository,
    RetentionPolicy,
    Tag,
    utcnow,
)
from registry.domain.errors import CONFLICT, NOT_FOUND, REQUEST_INVALID, RegistryError
from registry.domain.tag_patterns import TagPattern, TagPatternError
from registry.services import storage_deletions
from registry.services.admin_catalog import CatalogService, ManifestInfo, RepositoryContents
from registry.services.audit import AuditService
from storage.driver import Driver


@dataclass(frozen=True, slots=True)
class Rules:
    name: str
    repository_pattern: str
    keep_newest: int | None = None
    keep_regex: str | None = None
    delete_older_than_days: float | None = None
    delete_untagged: bool = False


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    id: int
    rules: Rules
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(slots=True)
class DoomedTag:
    name: str
    digest: str
    pushed_at: dt.datetime
    manifest_id: int


@dataclass(slots=True)
class DoomedManifest:
    id: int
    digest: str
    media_type: str
    size: int
    storage_key: str | None  # None: the bytes are in the row (migration 0009)


@dataclass(slots=True)
class RepositoryPlan:
    repository: str
    policies: list[str]
    tags: list[DoomedTag] = field(default_factory=list)
    manifests: list[DoomedManifest] = field(default_factory=list)
    bytes_freed: int = 0


@dataclass(slots=True)
class RetentionPlan:
    repositories: list[RepositoryPlan]
    bytes_freed: int = 0

    @property
    def tag_count(self) -> int:
        return sum(len(r.tags) for r in self.repositories)

    @property
    def manifest_count(self) -> int:
        return sum(len(r.manifests) for r in self.repositories)


def _stored(row: RetentionPolicy) -> StoredPolicy:
    rules = Rules(
        name=row.name,
        repository_pattern=row.repository_pattern,
        keep_newest=row.keep_newest,
        keep_regex=row.keep_regex,
        delete_older_than_days=row.delete_older_than_days,
        delete_untagged=row.delete_untagged,
    )
    return StoredPolicy(row.id, rules, row.created_at, row.updated_at)


def has_tag_rules(rules: Rules) -> bool:
    return not (
        rules.keep_newest is None
        and rules.keep_regex is None
        and rules.delete_older_than_days is None
    )


def doomed_tags(contents: RepositoryContents, rules: Rules, now: dt.datetime) -> set[str]:
    if not has_tag_rules(rules):
        return set()
    newest = sorted(contents.tags, key=lambda t: (t.updated_at, t.name), reverse=True)
    kept = {t.name for t in newest[: rules.keep_newest or 0]}
    if rules.keep_regex is not None:
        try:
            pattern = TagPattern(rules.keep_regex)
        except TagPatternError as exc:
            # Stored before keep_regex was matched with RE2: no tag goes by a rule
            # that cannot be evaluated safely.
            raise RegistryError(
                REQUEST_INVALID,
                f"retention policy {rules.name!r} cannot be evaluated: keep_regex: {exc};"
                " replace the policy",
            ) from exc
        kept |= {t.name for t in contents.tags if pattern.fullmatch(t.name)}
    result = set()
    for tag in contents.tags:
        if tag.name in kept:
            continue
        if rules.delete_older_than_days is not None:
            age = now - tag.updated_at
            if age < dt.timedelta(days=rules.delete_older_than_days):
                continue
        result.add(tag.name)
    return result


def doomed_manifests(
    contents: RepositoryContents, gone_tags: set[str], delete_untagged: bool
) -> list[ManifestInfo]:
    manifests = contents.manifests
    children = {c for m in manifests.values() for c in m.children}
    roots = {t.manifest.digest for t in contents.tags if t.name not in gone_tags}
    if not delete_untagged:
        roots |= {
            m.digest
            for m in manifests.values()
            if not m.tags and m.digest not in children and m.subject_digest is None
        }
    referrers: dict[str, list[str]] = {}
    for m in manifests.values():
        if m.subject_digest is not None:
            referrers.setdefault(m.subject_digest, []).append(m.digest)
    reached: set[str] = set()
    pending = [d for d in roots if d in manifests]
    while pending:
        digest = pending.pop()
        if digest in reached:
            continue
        reached.add(digest)
        pending.extend(c for c in manifests[digest].children if c in manifests)
        pending.extend(referrers.get(digest, ()))
    return sorted((m for d, m in manifests.items() if d not in reached), key=lambda m: m.pushed_at)


class RetentionService:
    def __init__(
        self, db: Database, driver: Driver, catalog: CatalogService, audit: AuditService
    ) -> None:
        self.db = db
        self.driver = driver
        self.catalog = catalog
        self.audit = audit

    # -- stored policies ---------------------------------------------------------
    def policies(self) -> list[StoredPolicy]:
        with self.db.read() as session:
            rows = session.scalars(select(RetentionPolicy).order_by(RetentionPolicy.id))
            return [_stored(r) for r in rows]

    def policy(self, policy_id: int) -> StoredPolicy:
        with self.db.read() as session:
            row = session.get(RetentionPolicy, policy_id)
            if row is None:
                raise RegistryError(NOT_FOUND, f"no retention policy {policy_id}")
            return _stored(row)

    def save(self, rules: Rules, actor: str, policy_id: int | None = None) -> StoredPolicy:
        try:
            with self.db.write() as session:
                if policy_id is None:
                    row = RetentionPolicy(created_at=utcnow())
                    session.add(row)
                else:
                    found = session.get(RetentionPolicy, policy_id)
                    if found is None:
                        raise RegistryError(NOT_FOUND, f"no retention policy {policy_id}")
                    row = found
                row.name = rules.name
                row.repository_pattern = rules.repository_pattern
                row.keep_newest = rules.keep_newest
                row.keep_regex = rules.keep_regex
                row.delete_older_than_days = rules.delete_older_than_days
                row.delete_untagged = rules.delete_untagged
                row.updated_at = utcnow()
                session.flush()
                action = (
                    "retention.policy.create" if policy_id is None else "retention.policy.update"
                )
                self.audit.add(session, actor, action, f"policy:{row.id}", {"name": rules.name})
                return _stored(row)
        except IntegrityError as exc:
            raise RegistryError(
                CONFLICT, f"a retention policy named {rules.name!r} exists already"
            ) from exc

    def remove(self, policy_id: int, actor: str) -> None:
        with self.db.write() as session:
            removed = rows_affected(
                session.execute(delete(RetentionPolicy).where(RetentionPolicy.id == policy_id))
            )
            if not removed:
                raise RegistryError(NOT_FOUND, f"no retention policy {policy_id}")
            self.audit.add(session, actor, "retention.policy.delete", f"policy:{policy_id}")

    # -- preview and apply -------------------------------------------------------
    def plan(
        self,
        policies: Sequence[Rules],
        now: dt.datetime | None = None,
        only: Sequence[str] | None = None,
    ) -> RetentionPlan:
        """What ``policies`` delete now, in every repository or ``only`` those named."""
        now = now or utcnow()
        query = select(Repository.name)
        if only is not None:
            query = query.where(Repository.name.in_(set(only)))
        with self.db.read() as session:
            repositories = list(session.scalars(query))
        plans: list[RepositoryPlan] = []
        doomed_ids: set[int] = set()
        candidate_blobs: dict[str, tuple[int, str]] = {}  # digest -> (size, first repo)
        for name in sorted(repositories):
            matching = [p for p in policies if fnmatch.fnmatchcase(name, p.repository_pattern)]
            if not matching:
                continue
            contents = self.catalog.contents(name, platforms=False)
            gone: set[str] | None = None
            # A policy without tag rules (only delete_untagged) abstains: were it to vote,
            # it would keep every tag and silence the other policies.
            for rules in filter(has_tag_rules, matching):
                mine = doomed_tags(contents, rules, now)
                gone = mine if gone is None else gone & mine
            gone = gone or set()
            untagged = any(r.delete_untagged for r in matching)
            manifests = doomed_manifests(contents, gone, untagged)
            if not gone and not manifests:
                continue
            plan = RepositoryPlan(name, [p.name for p in matching])
            for tag in contents.tags:
                if tag.name in gone:
                    plan.tags.append(
                        DoomedTag(tag.name, tag.manifest.digest, tag.updated_at, tag.manifest.id)
                    )
            for m in manifests:
                plan.manifests.append(
                    DoomedManifest(m.id, m.digest, m.media_type, m.manifest_size, m.storage_key)
                )
                doomed_ids.add(m.id)
                plan.bytes_freed += m.manifest_size
                for digest, size in m.blobs.items():
                    candidate_blobs.setdefault(digest, (size, name))
            plans.append(plan)
        still_used = self._referenced_elsewhere(list(candidate_blobs), doomed_ids)
        by_repo = {p.repository: p for p in plans}
        for digest, (size, first_repo) in candidate_blobs.items():
            if digest not in still_used:
                by_repo[first_repo].bytes_freed += size
        return RetentionPlan(plans, sum(p.bytes_freed for p in plans))

    def _referenced_elsewhere(self, digests: list[str], doomed_ids: set[int]) -> set[str]:
        used: set[str] = set()
        with self.db.read() as session:
            for start in range(0, len(digests), 500):
                chunk = digests[start : start + 500]
                rows = session.execute(
                    select(ManifestBlob.blob_digest, ManifestBlob.manifest_id).where(
                        ManifestBlob.blob_digest.in_(chunk)
                    )
                )
                used.update(d for d, mid in rows if mid not in doomed_ids)
        return used

    def apply(
        self, policies: Sequence[Rules], actor: str, only: Sequence[str] | None = None
    ) -> RetentionPlan:
        plan = self.plan(policies, only=only)

        def delete_and_audit(session: Session) -> list[str]:
            keys = self._delete_planned(session, plan)
            self.audit.add(
                session,
                actor,
                "retention.apply",
                ",".join(p.repository for p in plan.repositories)[:1024] or "-",
                {
                    "policies": sorted({n for p in plan.repositories for n in p.policies})
                    or [r.name for r in policies],
                    "tags_deleted": plan.tag_count,
                    "manifests_deleted": plan.manifest_count,
                    "bytes_freed_expected": plan.bytes_freed,
                    "repositories": {
                        p.repository: {
                            "tags": [t.name for t in p.tags],
                            "manifests": [m.digest for m in p.manifests],
                        }
                        for p in plan.repositories
                    },
                },
            )
            return keys

        # PostgreSQL may pick this transaction as a deadlock victim (a push locks a
        # manifest, then its tag; we delete tags, then manifests): run it again.
        keys = self.db.write_retrying(delete_and_audit)
        storage_deletions.delete_now(self.db, self.driver, keys)
        return plan

    @staticmethod
    def _delete_planned(session: Session, plan: RetentionPlan) -> list[str]:
        """Delete the planned rows; queue and return the storage keys of manifests
        actually removed (pre-0009 rows)."""
        removed: list[tuple[str, int]] = []
        for repo_plan in plan.repositories:
            repo_id = session.scalar(
                select(Repository.id).where(Repository.name == repo_plan.repository)
            )
            if repo_id is None:
                continue
            for tag in repo_plan.tags:
                # A tag moved to another manifest since the plan was made stays.
                session.execute(
                    delete(Tag).where(
                        Tag.repository_id == repo_id,
                        Tag.name == tag.name,
                        Tag.manifest_id == tag.manifest_id,
                    )
                )
            parent = aliased(Manifest)
            listed = exists().where(
                ManifestReference.child_digest == Manifest.digest,
                ManifestReference.parent_id == parent.id,
                parent.repository_id == repo_id,
            )
            # A referrer (signature, SBOM) goes with its subject, as in online GC.
            subject = aliased(Manifest)
            described = exists().where(
                subject.repository_id == repo_id, subject.digest == Manifest.subject_digest
            )
            # Newest first: an index usually goes before the images it lists; another
            # pass takes the images whose planned index went after them.
            pending = list(reversed(repo_plan.manifests))
            while pending:
                left = []
                for manifest in pending:
                    # Lock, then check in a later statement: on PostgreSQL a DELETE that
                    # waits for a push's lock on the row acts on what it read before that
                    # push committed, and would take the push's new tag with it (cascade).
                    session.execute(
                        select(Manifest.id).where(Manifest.id == manifest.id).with_for_update()
                    )
                    # A tag pushed onto it, an index listing it, or its subject still
                    # here (kept, or planned but not yet deleted) keeps it.
                    # RETURNING: the key of the row as deleted (an export may have set it).
                    deleted = session.execute(
                        delete(Manifest)
                        .where(
                            Manifest.id == manifest.id,
                            ~exists().where(Tag.manifest_id == Manifest.id),
                            ~listed,
                            ~described,
                        )
                        .returning(Manifest.storage_key, Manifest.size)
                    ).all()
                    if not deleted:
                        left.append(manifest)
                    removed.extend((str(k), int(n)) for k, n in deleted if k is not None)
                if len(left) == len(pending):
                    break
                pending = left
        storage_deletions.queue(session, removed)
        return [key for key, _ in removed]
