"""Manifests: exact bytes, references and tags in the database.

Since migration 0009 a manifest's bytes go into its row (``payload``), in the
transaction that records its references: the database commit alone makes a
push durable. Rows from before keep a ``storage_key`` and are read from storage.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from registry.db.engine import Database, rows_affected
from registry.db.models import (
    Manifest,
    Repository,
    Tag,
)
from registry.db.raw import EPOCH_NOW, RawTx, in_clause
from registry.domain.digests import Digest, digest_of, looks_like_digest, parse_digest
from registry.domain.errors import (
    DIGEST_INVALID,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_TOO_LARGE,
    MANIFEST_UNKNOWN,
    UNAVAILABLE,
    RegistryError,
)
from registry.domain.manifests import OCI_INDEX, ParsedManifest, parse_manifest
from registry.domain.names import check_tag
from registry.services import storage_deletions
from registry.services.repositories import ensure_repository_raw, find_repository_id
from storage.driver import Driver, ObjectNotFound, StorageError


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    id: int
    digest: str
    media_type: str
    size: int
    # None: the bytes are in the row (manifests.payload), not in storage.
    storage_key: str | None
    subject_digest: str | None

    @property
    def cache_key(self) -> str:
        """Names these bytes for PayloadCache: a reused row id comes with a digest,
        and one digest always has the same bytes."""
        return f"{self.digest}#{self.id}"


class PayloadCache:
    """Manifest bytes by ManifestRecord.cache_key: immutable, so safe to cache per process."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self._max:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


# Hot-path lookups run as plain SQL (see Database.fetch_one).
_BY_TAG = (
    "SELECT m.id, m.digest, m.media_type, m.size, m.storage_key, m.subject_digest"
    " FROM manifests m JOIN tags t ON t.manifest_id = m.id"
    " JOIN repositories r ON r.id = t.repository_id WHERE r.name = :name AND t.name = :tag"
)
_BY_DIGEST = (
    "SELECT m.id, m.digest, m.media_type, m.size, m.storage_key, m.subject_digest"
    " FROM manifests m JOIN repositories r ON r.id = m.repository_id"
    " WHERE r.name = :name AND m.digest = :digest"
)


_EXISTING = (
    "SELECT id, digest, media_type, size, storage_key, subject_digest FROM manifests"
    " WHERE repository_id = :repo AND digest = :digest"
)
_INSERT_MANIFEST = (
    "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, size,"
    " payload, config_digest, subject_digest, annotations, created_at)"
    " VALUES (:repo, :digest, :media_type, :artifact_type, :size, :payload, :config,"
    " :subject, :annotations, :now)"
    # Racing first pushes of one manifest: the loser waits for the winner's commit,
    # inserts nothing and reads the winner's row instead of failing.
    " ON CONFLICT (repository_id, digest) DO NOTHING RETURNING id"
)
# A re-push by digest renews the GC grace of a stored manifest (as re-uploading a blob
# renews its link's): its index may be on the way. Time as the collector reads it.
_RENEW_GRACE = (
    "INSERT INTO gc_manifest_reviews (manifest_id, event_at, event) VALUES (:m, {now}, 'repush')"
)
_PAYLOAD = "SELECT payload FROM manifests WHERE id = :id AND digest = :digest"
_UPSERT_TAG = (
    "INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
    " VALUES (:repo, :name, :m, :now) ON CONFLICT (repository_id, name)"
    " DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at"
)


# {clause} is an IN list of placeholders (registry.db.raw.in_clause), never values.
_BLOBS_PRESENT = (
    "SELECT rb.blob_digest FROM repository_blobs rb JOIN blobs b ON b.digest = rb.blob_digest"
    " WHERE rb.repository_id = :repo AND rb.blob_digest IN {clause}{lock}"
)
_CHILDREN_PRESENT = (
    "SELECT digest FROM manifests WHERE repository_id = :repo AND digest IN {clause}{lock}"
)


class ManifestService:
    def __init__(
        self, db: Database, driver: Driver, max_size: int, cache_bytes: int = 64 << 20
    ) -> None:
        self.db = db
        self.driver = driver
        self.max_size = max_size
        self.cache = PayloadCache(cache_bytes)
        # Manifest id -> monotonic time this process last recorded a pull of it.
        self._pulls: dict[int, float] = {}

    # -- reads ---------------------------------------------------------------
    def resolve(self, repository: str, reference: str, *, quick: bool = False) -> ManifestRecord:
        """Find a manifest by tag or digest in ``repository``.

        ``quick``: run on the calling (event loop) thread or raise
        QuickReadUnavailable (see Database.fetch_one_quick).
        """
        fetch = self.db.fetch_one_quick if quick else self.db.fetch_one
        if looks_like_digest(reference):
            digest = str(parse_digest(reference))
            row = fetch(_BY_DIGEST, {"name": repository, "digest": digest})
        else:
            check_tag(reference)
            row = fetch(_BY_TAG, {"name": repository, "tag": reference})
        if row is None:
            raise RegistryError(
                MANIFEST_UNKNOWN, detail={"name": repository, "reference": reference}
            )
        return ManifestRecord(*row)

    def payload(self, record: ManifestRecord) -> bytes:
        cached = self.cache.get(record.cache_key)
        if cached is not None:
            return cached
        if record.storage_key is None:
            row = self.db.fetch_one(_PAYLOAD, {"id": record.id, "digest": record.digest})
            if row is None or row[0] is None:  # deleted since it was resolved
                raise RegistryError(MANIFEST_UNKNOWN, detail={"digest": record.digest})
            data = bytes(row[0])
        else:
            data = self._stored_payload(record.storage_key)
        self.cache.put(record.cache_key, data)
        return data

    def _stored_payload(self, key: str) -> bytes:
        """Bytes of a manifest pushed before migration 0009."""
        try:
            return self.driver.get(key)
        except ObjectNotFound as exc:
            raise RegistryError(UNAVAILABLE, "manifest data is missing from storage") from exc
        except StorageError as exc:
            raise RegistryError(UNAVAILABLE, f"storage error: {exc}") from exc

    def referrers(
        self, repository: str, subject: Digest, artifact_type: str | None
    ) -> list[dict[str, Any]]:
        query = (
            select(
                Manifest.digest,
                Manifest.media_type,
                Manifest.size,
                Manifest.artifact_type,
                Manifest.annotations,
            )
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == repository, Manifest.subject_digest == str(subject))
            .order_by(Manifest.digest)
        )
        if artifact_type is not None:
            query = query.where(Manifest.artifact_type == artifact_type)
        with self.db.read() as session:
            rows = session.execute(query).all()
        result: list[dict[str, Any]] = []
        for row in rows:
            descriptor: dict[str, Any] = {
                "mediaType": row.media_type,
                "digest": row.digest,
                "size": row.size,
            }
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = json.loads(row.annotations)
            result.append(descriptor)
        return result

    # -- pull times ----------------------------------------------------------
    # last_pulled_at is coarse on purpose: at most one write per manifest, process and hour.
    PULL_RECORD_INTERVAL = 3600.0

    def pull_due(self, manifest_id: int) -> bool:
        """In memory, no I/O: should this GET record a pull?"""
        now = time.monotonic()
        last = self._pulls.get(manifest_id)
        if last is not None and now - last < self.PULL_RECORD_INTERVAL:
            return False
        if len(self._pulls) > 100_000:
            self._pulls.clear()
        self._pulls[manifest_id] = now
        return True

    def record_pull(self, manifest_id: int) -> None:
        """Set last_pulled_at unless some process did within the interval (runs after the
        response is sent, so a busy write lock never delays a pull)."""
        now = dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(seconds=self.PULL_RECORD_INTERVAL)
        try:
            with self.db.raw_transaction() as tx:
                tx.run(
                    "UPDATE manifests SET last_pulled_at = :now WHERE id = :id"
                    " AND (last_pulled_at IS NULL OR last_pulled_at < :cutoff)",
                    {"now": tx.timestamp(now), "id": manifest_id, "cutoff": tx.timestamp(cutoff)},
                )
        except Exception:
            logging.getLogger("lading.manifests").warning(
                "cannot record a pull of manifest %s", manifest_id, exc_info=True
            )

    # -- writes --------------------------------------------------------------
    def put(
        self, repository: str, reference: str, content_type: str | None, payload: bytes
    ) -> ManifestRecord:
        if len(payload) > self.max_size:
            raise RegistryError(MANIFEST_TOO_LARGE, detail={"max": self.max_size})
        tag: str | None = None
        if looks_like_digest(reference):
            expected = parse_digest(reference)
            digest = digest_of(payload, expected.algorithm)
            if digest != expected:
                raise RegistryError(
                    DIGEST_INVALID,
                    "manifest digest does not match the reference",
                    detail={"expected": str(expected), "actual": str(digest)},
                )
        else:
            tag = check_tag(reference)
            digest = digest_of(payload)
        parsed = parse_manifest(payload, content_type)
        digest_text = str(digest)
        # No storage write: the bytes go into the row, so the commit makes them durable.
        record: ManifestRecord = self.db.run_raw(
            lambda tx: self._record_manifest(tx, repository, digest_text, parsed, payload, tag)
        )
        return record

    def _record_manifest(
        self,
        tx: RawTx,
        repository: str,
        digest: str,
        parsed: ParsedManifest,
        payload: bytes,
        tag: str | None,
    ) -> ManifestRecord:
        now = tx.timestamp()
        repo_id = ensure_repository_raw(tx, repository, now)
        # FOR SHARE: a collector deleting this manifest waits for us (or we see it gone).
        existing_sql = _EXISTING + " FOR SHARE" if tx.is_postgres else _EXISTING
        existing = {"repo": repo_id, "digest": digest}
        row = tx.one(existing_sql, existing)
        if row is None:
            self._check_references(tx, repo_id, parsed)
            row = self._insert_manifest(tx, repo_id, digest, parsed, payload, now)
        elif tag is None:
            renew = _RENEW_GRACE.format(now=EPOCH_NOW[tx.dialect])
            tx.run(renew, {"m": row[0]})
        if row is None:  # a concurrent push of the same bytes committed it first
            row = tx.one(existing_sql, existing)
            if row is None:
                raise RegistryError(UNAVAILABLE, "manifest changed concurrently; retry")
        record = ManifestRecord(*row)
        if tag is not None:
            tx.run(_UPSERT_TAG, {"repo": repo_id, "name": tag, "m": record.id, "now": now})
        # At most one update per repository and second: concurrent pushes to one
        # repository would otherwise queue on its row lock (PostgreSQL) until commit.
        cutoff = tx.timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        tx.run(
            "UPDATE repositories SET last_push_at = :now WHERE id = :repo"
            " AND (last_push_at IS NULL OR last_push_at < :cutoff)",
            {"now": now, "repo": repo_id, "cutoff": cutoff},
        )
        return record

    @staticmethod
    def _insert_manifest(
        tx: RawTx, repo_id: int, digest: str, parsed: ParsedManifest, payload: bytes, now: Any
    ) -> tuple[Any, ...] | None:
        """The new row (as _EXISTING reads it) with its references, or None if a
        concurrent push inserted this manifest first."""
        subject = str(parsed.subject.digest) if parsed.subject else None
        inserted = tx.one(
            _INSERT_MANIFEST,
            {
                "repo": repo_id,
                "digest": digest,
                "media_type": parsed.media_type,
                "artifact_type": parsed.effective_artifact_type(),
                "size": len(payload),
                "payload": payload,
                "config": str(parsed.config.digest) if parsed.config else None,
                "subject": subject,
                "annotations": json.dumps(parsed.annotations) if parsed.annotations else None,
                "now": now,
            },
        )
        if inserted is None:
            return None
        manifest_id = int(inserted[0])
        blob_digests = sorted({str(d.digest) for d in parsed.blob_references()})
        tx.many(
            "INSERT INTO manifest_blobs (manifest_id, blob_digest) VALUES (:m, :d)",
            [{"m": manifest_id, "d": d} for d in blob_digests],
        )
        children = sorted({str(d.digest) for d in parsed.manifest_references()})
        tx.many(
            "INSERT INTO manifest_references (parent_id, child_digest) VALUES (:m, :d)",
            [{"m": manifest_id, "d": c} for c in children],
        )
        return (manifest_id, digest, parsed.media_type, len(payload), None, subject)

    @staticmethod
    def _check_references(tx: RawTx, repo_id: int, parsed: ParsedManifest) -> None:
        """Inside the recording transaction: every referenced blob/child must exist."""
        missing: list[str] = []
        wanted_blobs = {str(d.digest) for d in parsed.blob_references()}
        if wanted_blobs:
            clause, params = in_clause("d", sorted(wanted_blobs))
            # On PostgreSQL, hold the blobs and their repository links against a
            # concurrent collector until commit (it drops links, not only blobs).
            lock = " FOR SHARE" if tx.is_postgres else ""
            found = {
                r[0]
                for r in tx.all(
                    _BLOBS_PRESENT.format(clause=clause, lock=lock), {"repo": repo_id, **params}
                )
            }
            missing.extend(sorted(wanted_blobs - found))
        wanted_children = {str(d.digest) for d in parsed.manifest_references()}
        if wanted_children:
            clause, params = in_clause("c", sorted(wanted_children))
            lock = " FOR SHARE" if tx.is_postgres else ""
            found_children = {
                r[0]
                for r in tx.all(
                    _CHILDREN_PRESENT.format(clause=clause, lock=lock),
                    {"repo": repo_id, **params},
                )
            }
            missing.extend(sorted(wanted_children - found_children))
        if missing:
            raise RegistryError(
                MANIFEST_BLOB_UNKNOWN,
                f"manifest references unknown content: {', '.join(missing[:5])}",
                detail={"missing": missing[:50]},
            )

    def delete(self, repository: str, reference: str) -> None:
        """By digest: the manifest and its tags. By tag: only that tag."""
        if looks_like_digest(reference):
            digest, tag = str(parse_digest(reference)), None
        else:
            digest, tag = None, check_tag(reference)
        # PostgreSQL may pick this transaction as a deadlock victim: run it again.
        removed, doomed_keys = self.db.write_retrying(
            lambda session: self._delete_rows(session, repository, digest, tag)
        )
        if not removed:
            raise RegistryError(
                MANIFEST_UNKNOWN, detail={"name": repository, "reference": reference}
            )
        # A pre-0009 row owns its own copy of the bytes (unique key), queued with it.
        storage_deletions.delete_now(self.db, self.driver, doomed_keys)

    @staticmethod
    def _delete_rows(
        session: Session, repository: str, digest: str | None, tag: str | None
    ) -> tuple[int, list[str]]:
        """Rows removed, and the storage keys (queued for deletion) of a manifest
        deleted by digest."""
        repo_id = find_repository_id(session, repository)
        if repo_id is None:
            return 0, []
        if digest is None:
            gone = delete(Tag).where(Tag.repository_id == repo_id, Tag.name == tag)
            return rows_affected(session.execute(gone)), []
        where = (Manifest.repository_id == repo_id, Manifest.digest == digest)
        # RETURNING: the key of the row actually deleted (an export may have set it).
        rows = session.execute(
            delete(Manifest).where(*where).returning(Manifest.storage_key, Manifest.size)
        ).all()
        stored = [(str(key), int(size)) for key, size in rows if key is not None]
        storage_deletions.queue(session, stored)
        return len(rows), [key for key, _ in stored]


def index_document(descriptors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
