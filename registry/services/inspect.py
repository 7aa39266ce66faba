"""Image inspection like ``docker inspect``: config, layers, platforms and referrers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.domain.digests import parse_digest
from registry.domain.errors import MANIFEST_UNKNOWN, RegistryError
from registry.domain.manifests import INDEX_TYPES
from registry.services.admin_content import ContentReader, platform_text
from registry.services.manifests import ManifestRecord, ManifestService

# Config keys reported as they are (docker's ``Config`` section).
_CONFIG_KEYS = {
    "Env": "env",
    "Entrypoint": "entrypoint",
    "Cmd": "cmd",
    "Labels": "labels",
    "WorkingDir": "working_dir",
    "User": "user",
    "ExposedPorts": "exposed_ports",
    "Volumes": "volumes",
    "StopSignal": "stop_signal",
}


@dataclass(slots=True)
class LayerView:
    digest: str
    media_type: str
    size: int


@dataclass(slots=True)
class PlatformView:
    platform: str | None
    digest: str
    media_type: str
    size: int


@dataclass(slots=True)
class ImageView:
    repository: str
    digest: str
    media_type: str
    manifest_size: int
    artifact_type: str | None = None
    # Set for an image index: its children, one per platform.
    platforms: list[PlatformView] | None = None
    platform: str | None = None
    config_digest: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    author: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[LayerView] = field(default_factory=list)
    total_size: int = 0
    annotations: dict[str, str] | None = None
    referrers: list[dict[str, Any]] = field(default_factory=list)


class InspectService:
    def __init__(self, manifests: ManifestService, content: ContentReader) -> None:
        self.manifests = manifests
        self.content = content

    def inspect(self, repository: str, reference: str, platform: str | None = None) -> ImageView:
        record = self.manifests.resolve(repository, reference)
        document = self.content.manifest_json(record)
        if record.media_type in INDEX_TYPES:
            children = self._children(document)
            if platform is None:
                view = ImageView(repository, record.digest, record.media_type, record.size)
                view.platforms = children
                view.annotations = _annotations(document)
                view.total_size = record.size + self._children_size(repository, children)
                view.referrers = self._referrers(repository, record.digest)
                return view
            chosen = next((c for c in children if c.platform == platform), None)
            if chosen is None:
                raise RegistryError(
                    MANIFEST_UNKNOWN,
                    f"no {platform} image in this index",
                    detail={"available": [c.platform for c in children if c.platform]},
                )
            record = self.manifests.resolve(repository, chosen.digest)
            document = self.content.manifest_json(record)
            return self._image(repository, record, document)
        view = self._image(repository, record, document)
        if platform is not None and view.platform != platform:
            # As `docker pull --platform`: another platform's image is not an answer.
            raise RegistryError(
                MANIFEST_UNKNOWN,
                f"{reference} is a {view.platform or 'platform-less'} image, not {platform}",
                detail={"available": [view.platform] if view.platform else []},
            )
        return view

    def _children_size(self, repository: str, children: list[PlatformView]) -> int:
        """Children's manifests plus their distinct config and layer blobs."""
        blobs: dict[str, int] = {}
        total = 0
        for child in children:
            try:
                record = self.manifests.resolve(repository, child.digest)
            except RegistryError:
                continue
            total += record.size
            document = self.content.manifest_json(record)
            for desc in [document.get("config"), *(document.get("layers") or [])]:
                if isinstance(desc, dict) and desc.get("digest"):
                    blobs[str(desc["digest"])] = int(desc.get("size", 0))
        return total + sum(blobs.values())

    @staticmethod
    def _children(document: dict[str, Any]) -> list[PlatformView]:
        found = []
        for child in document.get("manifests") or []:
            if not isinstance(child, dict):
                continue
            found.append(
                PlatformView(
                    platform=platform_text(child.get("platform")),
                    digest=str(child.get("digest", "")),
                    media_type=str(child.get("mediaType", "")),
                    size=int(child.get("size", 0)),
                )
            )
        return found

    def _image(
        self, repository: str, record: ManifestRecord, document: dict[str, Any]
    ) -> ImageView:
        view = ImageView(repository, record.digest, record.media_type, record.size)
        view.annotations = _annotations(document)
        artifact = document.get("artifactType")
        view.artifact_type = artifact if isinstance(artifact, str) else None
        config_desc = document.get("config")
        config_size = 0
        if isinstance(config_desc, dict) and config_desc.get("digest"):
            view.config_digest = str(parse_digest(str(config_desc["digest"])))
            config_size = int(config_desc.get("size", 0))
            config = self.content.blob_json(view.config_digest) or {}
            self._fill_config(view, config)
        for layer in document.get("layers") or []:
            if isinstance(layer, dict):
                view.layers.append(
                    LayerView(
                        digest=str(layer.get("digest", "")),
                        media_type=str(layer.get("mediaType", "")),
                        size=int(layer.get("size", 0)),
                    )
                )
        view.total_size = record.size + config_size + sum(layer.size for layer in view.layers)
        view.referrers = self._referrers(repository, record.digest)
        return view

    @staticmethod
    def _fill_config(view: ImageView, config: dict[str, Any]) -> None:
        view.platform = platform_text(config)
        inner = config.get("config")
        if isinstance(inner, dict):
            view.config = {
                out: inner[key] for key, out in _CONFIG_KEYS.items() if inner.get(key) is not None
            }
        created = config.get("created")
        view.created = created if isinstance(created, str) else None
        author = config.get("author")
        view.author = author if isinstance(author, str) else None
        history = config.get("history")
        if isinstance(history, list):
            view.history = [h for h in history if isinstance(h, dict)]

    def _referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        return self.manifests.referrers(repository, parse_digest(digest), None)


def _annotations(document: dict[str, Any]) -> dict[str, str] | None:
    value = document.get("annotations")
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return None
