"""Real registry services on a real database and filesystem storage, for GC tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.db import migrate
from registry.db.engine import Database
from registry.domain.digests import parse_digest
from registry.services.blobs import BlobService
from registry.services.gc import GarbageCollector
from registry.services.manifests import ManifestService
from registry.services.uploads import UploadService
from storage.driver import Driver
from storage.filesystem import FilesystemDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        from support.postgres import fresh_database_url

        return fresh_database_url()
    return f"sqlite:///{tmp_path / 'lading.db'}"


@dataclass
class Env:
    db: Database
    driver: Driver
    uploads: UploadService
    blobs: BlobService
    manifests: ManifestService

    @classmethod
    def create(cls, url: str, storage: Path | Driver) -> Env:
        db = Database(url)
        migrate.upgrade(db)
        driver = FilesystemDriver(storage) if isinstance(storage, Path) else storage
        return cls(
            db,
            driver,
            UploadService(db, driver),
            BlobService(db, driver),
            ManifestService(db, driver, 4 << 20, cache_bytes=0),
        )

    def collector(self, delay: float = 0.0) -> GarbageCollector:
        return GarbageCollector(self.db, self.driver, review_delay=delay, upload_purge_after=3600)

    def push_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        status = self.uploads.start(repo, None)
        appender = self.uploads.open_append(repo, status.id, None, 0)
        appender.write(data)
        appender.finish()
        self.uploads.complete(repo, status.id, None, parse_digest(digest_of(data)))
        return {"mediaType": LAYER, "digest": digest_of(data), "size": len(data)}

    def push_image(
        self, repo: str, tag: str | None, layers: list[bytes], subject: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        config = json.dumps({"layers": [digest_of(x) for x in layers], "tag": tag}).encode()
        cfg = self.push_blob(repo, config)
        cfg["mediaType"] = OCI_CONFIG
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cfg,
            "layers": [self.push_blob(repo, x) for x in layers],
        }
        if subject is not None:
            doc["subject"] = subject
        return self.put_manifest(repo, tag, OCI_MANIFEST, doc)

    def put_manifest(
        self, repo: str, tag: str | None, media_type: str, doc: dict[str, Any]
    ) -> dict[str, Any]:
        body = json.dumps(doc).encode()
        self.manifests.put(repo, tag or digest_of(body), media_type, body)
        return {"mediaType": media_type, "digest": digest_of(body), "size": len(body)}

    def manifest_digests(self, repo: str) -> set[str]:
        rows = self.db.fetch_all(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id"
            " WHERE r.name = :n",
            {"n": repo},
        )
        return {r[0] for r in rows}

    def linked_blobs(self, repo: str) -> set[str]:
        rows = self.db.fetch_all(
            "SELECT rb.blob_digest FROM repository_blobs rb JOIN repositories r"
            " ON r.id = rb.repository_id WHERE r.name = :n",
            {"n": repo},
        )
        return {r[0] for r in rows}

    def blob_rows(self) -> set[str]:
        return {r[0] for r in self.db.fetch_all("SELECT digest FROM blobs", {})}
