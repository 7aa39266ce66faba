"""Consistency between the metadata database and storage, and its repair.

Rows are read before storage is listed, so an object committed meanwhile
shows up as an orphan, never as missing bytes; orphans are deleted only once
they have been seen unreferenced for a grace period (``gc_orphans``), which
also spares uploads in flight. Rows reported missing are re-checked in the
transaction that removes them.

A blob being committed has its bytes under its own key (``<digest
key>.<upload id>``, or S3's ``_blobs/<upload id>``) before its row exists:
  * A commit whose row insert failed puts its session back, and the client's
    retry finds the bytes under that key, however much later: such an object
    is never an orphan while its upload's session exists (re-checked just
    before deleting).
  * Within one request, from the storage commit to the row insert (after the
    session row is claimed), the object has neither: only the grace spares
    it. That gap is one request's database write (seconds at worst), so the
    default hour is safe; ``--grace-seconds 0`` on a live registry is not.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.db.engine import Database
from registry.services import storage_deletions
from registry.services.gc_tasks import db_now
from storage.driver import Driver, ObjectNotFound, StorageError, UploadState

# S3 commits a multipart upload under "_blobs/<upload id>" (storage.s3_base.BLOBS).
PREFIXES = ("blobs", "_blobs", "manifests")


@dataclass
class FsckReport:
    missing_blobs: list[str] = field(default_factory=list)
    # (repository, digest)
    missing_manifests: list[tuple[str, str]] = field(default_factory=list)
    orphan_objects: list[str] = field(default_factory=list)
    orphan_uploads: list[str] = field(default_factory=list)
    # Bytes GC already queued for deletion (a later pass removes them).
    pending_deletions: list[str] = field(default_factory=list)
    # What --repair did.
    deleted_objects: list[str] = field(default_factory=list)
    deleted_uploads: list[str] = field(default_factory=list)
    removed_blobs: list[str] = field(default_factory=list)
    removed_manifests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.missing_blobs
            or self.missing_manifests
            or self.orphan_objects
            or self.orphan_uploads
        )


def _upload_of(key: str) -> str:
    """The upload id a committed blob's key ends with; manifest keys' random
    suffixes (12 hex digits) never equal one (32 or 64)."""
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


class FsckService:
    def __init__(self, db: Database, driver: Driver) -> None:
        self.db = db
        self.driver = driver

    def check(self, *, repair: bool = False, grace_seconds: float = 3600.0) -> FsckReport:
        report = FsckReport()
        blob_keys = dict(self.db.fetch_all("SELECT storage_key, digest FROM blobs", {}))
        manifest_keys = {
            r[0]: (r[1], r[2])
            for r in self.db.fetch_all(
                "SELECT m.storage_key, r.name, m.digest FROM manifests m"
                " JOIN repositories r ON r.id = m.repository_id"
                # Since migration 0009 most manifests' bytes are in their row.
                " WHERE m.storage_key IS NOT NULL",
                {},
            )
        }
        pending = {
            r[0] for r in self.db.fetch_all("SELECT storage_key FROM gc_storage_deletions", {})
        }
        known_uploads = {r[0] for r in self.db.fetch_all("SELECT id FROM upload_sessions", {})}
        stored: set[str] = set()
        for prefix in PREFIXES:
            stored.update(self.driver.list(prefix))
        uploads = dict(self.driver.list_uploads())

        report.missing_blobs = sorted(d for k, d in blob_keys.items() if k not in stored)
        report.missing_manifests = sorted(v for k, v in manifest_keys.items() if k not in stored)
        unreferenced = stored - blob_keys.keys() - manifest_keys.keys()
        unreferenced = {k for k in unreferenced if _upload_of(k) not in known_uploads}
        report.pending_deletions = sorted(unreferenced & pending)
        report.orphan_objects = sorted(unreferenced - pending)
        report.orphan_uploads = sorted(set(uploads) - known_uploads)
        sightings = self._sightings(
            [f"object:{k}" for k in report.orphan_objects]
            + [f"upload:{u}" for u in report.orphan_uploads]
        )
        if not repair:
            return report
        for key in report.orphan_objects:
            if sightings.get(f"object:{key}", 0.0) <= self._now() - grace_seconds:
                with contextlib.suppress(ObjectNotFound):
                    if not self._still_unreferenced(key):
                        continue
                    self.driver.delete(key)
                report.deleted_objects.append(key)
        for upload_id in report.orphan_uploads:
            if sightings.get(f"upload:{upload_id}", 0.0) <= self._now() - grace_seconds:
                state: UploadState = uploads[upload_id]
                with contextlib.suppress(StorageError):
                    self.driver.abort_upload(state)
                report.deleted_uploads.append(upload_id)
        for digest in report.missing_blobs:
            report.removed_manifests.extend(self._remove_blob(digest, report))
        for repository, digest in report.missing_manifests:
            if self._remove_manifest(repository, digest):
                report.removed_manifests.append((repository, digest))
        return report

    def _now(self) -> float:
        with self.db.read() as session:
            return db_now(session)

    def _sightings(self, keys: list[str]) -> dict[str, float]:
        """When each orphan was first seen; forget orphans that are gone."""
        wanted = set(keys)

        def record(session: Session) -> dict[str, float]:
            now = db_now(session)
            seen: dict[str, float] = {
                str(k): float(t)
                for k, t in session.execute(text("SELECT key, first_seen FROM gc_orphans")).all()
            }
            for key in wanted - seen.keys():
                session.execute(
                    text(
                        "INSERT INTO gc_orphans (key, first_seen) VALUES (:k, :t)"
                        " ON CONFLICT (key) DO NOTHING"  # another collector saw it too
                    ),
                    {"k": key, "t": now},
                )
                seen[key] = now
            for key in seen.keys() - wanted:
                if key.startswith("object:"):  # GC owns the upload sightings too
                    session.execute(text("DELETE FROM gc_orphans WHERE key = :k"), {"k": key})
            return seen

        seen = self.db.write_retrying(record)
        return {k: seen[k] for k in wanted}

    def _still_unreferenced(self, key: str) -> bool:
        params = {"k": key, "u": _upload_of(key)}
        return (
            self.db.fetch_one("SELECT 1 FROM blobs WHERE storage_key = :k", params) is None
            and self.db.fetch_one("SELECT 1 FROM manifests WHERE storage_key = :k", params) is None
            # A session put back after its commit's row insert failed (module doc).
            and self.db.fetch_one("SELECT 1 FROM upload_sessions WHERE id = :u", params) is None
        )

    def _gone(self, key: str) -> bool:
        try:
            self.driver.stat(key)
        except ObjectNotFound:
            return True
        return False

    def _remove_blob(self, digest: str, report: FsckReport) -> list[tuple[str, str]]:
        """Drop a blob row whose bytes are gone, with the manifests that need it."""

        # Deletes manifests, then the blob: a concurrent delete taking the same rows
        # in another order can deadlock (40P01); the retry starts from the re-check.
        def remove(session: Session) -> list[tuple[str, str, str]] | None:
            key = session.execute(
                text("SELECT storage_key FROM blobs WHERE digest = :d"), {"d": digest}
            ).scalar()
            if key is None or not self._gone(str(key)):
                return None
            rows = session.execute(
                text(
                    "SELECT m.id, r.name, m.digest, m.storage_key, m.size FROM manifest_blobs mb"
                    " JOIN manifests m ON m.id = mb.manifest_id"
                    " JOIN repositories r ON r.id = m.repository_id WHERE mb.blob_digest = :d"
                ),
                {"d": digest},
            ).all()
            for manifest_id, *_ in rows:
                session.execute(text("DELETE FROM manifests WHERE id = :i"), {"i": manifest_id})
            session.execute(text("DELETE FROM blobs WHERE digest = :d"), {"d": digest})
            # Pre-0009 manifests' own bytes (others went with their row).
            storage_deletions.queue(session, [(r[3], int(r[4])) for r in rows if r[3]])
            return [(str(r[1]), str(r[2]), r[3]) for r in rows]

        removed = self.db.write_retrying(remove)
        if removed is None:
            return []
        report.removed_blobs.append(digest)
        keys = [key for _repository, _digest, key in removed if key is not None]
        storage_deletions.delete_now(self.db, self.driver, keys)
        return [(repository, manifest) for repository, manifest, _ in removed]

    def _remove_manifest(self, repository: str, digest: str) -> bool:
        def remove(session: Session) -> bool:
            row = session.execute(
                text(
                    "SELECT m.id, m.storage_key FROM manifests m JOIN repositories r"
                    " ON r.id = m.repository_id WHERE r.name = :n AND m.digest = :d"
                ),
                {"n": repository, "d": digest},
            ).first()
            if row is None or row[1] is None or not self._gone(str(row[1])):
                return False
            session.execute(text("DELETE FROM manifests WHERE id = :i"), {"i": row[0]})
            return True

        return self.db.write_retrying(remove)
