"""Reading manifests and image configs as JSON for the admin API (sizes capped)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from registry.db.engine import Database
from registry.domain.errors import UNAVAILABLE, RegistryError
from registry.services.manifests import ManifestRecord, ManifestService
from storage.driver import Driver, StorageError

# Image configs are small; anything larger is not worth parsing for a listing.
MAX_CONFIG_BYTES = 4 << 20


def platform_text(platform: dict[str, Any] | None) -> str | None:
    """``os/architecture[/variant]`` as docker prints it."""
    if not platform or not platform.get("os") or not platform.get("architecture"):
        return None
    parts = [str(platform["os"]), str(platform["architecture"])]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


class ContentReader:
    def __init__(self, db: Database, driver: Driver, manifests: ManifestService) -> None:
        self.db = db
        self.driver = driver
        self.manifests = manifests
        # Configs are immutable by digest: remember parsed platforms.
        self._platforms: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def manifest_json(self, record: ManifestRecord) -> dict[str, Any]:
        try:
            value = json.loads(self.manifests.payload(record))
        except ValueError as exc:
            raise RegistryError(UNAVAILABLE, "stored manifest is not JSON") from exc
        return value if isinstance(value, dict) else {}

    def blob_json(self, digest: str) -> dict[str, Any] | None:
        """A small JSON blob (an image config) by digest, or None if absent or too big."""
        row = self.db.fetch_one(
            "SELECT size, storage_key FROM blobs WHERE digest = :d", {"d": digest}
        )
        if row is None or int(row[0]) > MAX_CONFIG_BYTES:
            return None
        try:
            value = json.loads(self.driver.get(str(row[1])))
        except (StorageError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def config_platform(self, digest: str) -> str | None:
        with self._lock:
            if digest in self._platforms:
                return self._platforms[digest]
        config = self.blob_json(digest)
        platform = platform_text(config) if config else None
        with self._lock:
            self._platforms[digest] = platform
            while len(self._platforms) > 10_000:
                self._platforms.popitem(last=False)
        return platform

    def index_platforms(self, record: ManifestRecord) -> list[str]:
        document = self.manifest_json(record)
        found: list[str] = []
        for child in document.get("manifests") or []:
            if isinstance(child, dict):
                text = platform_text(child.get("platform"))
                if text and text not in found:
                    found.append(text)
        return found
