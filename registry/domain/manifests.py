"""Parsing and validating manifest bodies (no I/O, no database)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry.domain.digests import Digest, parse_digest
from registry.domain.errors import MANIFEST_INVALID, RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
SUPPORTED_TYPES = IMAGE_TYPES | INDEX_TYPES
# Content types clients send when they do not name a manifest type.
_GENERIC_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream"})


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    # Foreign / non-distributable layers carry URLs and need not be stored here.
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def blob_references(self) -> list[Descriptor]:
        """Config, layers and index entries that must exist as blobs in the repository."""
        refs = [self.config] if self.config is not None else []
        refs.extend(layer for layer in self.layers if not layer.urls)
        # Index entries of types this registry stores no manifests of can only be blobs
        # (BuildKit's registry cache lists its layers and cache config this way).
        refs.extend(entry for entry in self.manifests if entry.media_type not in SUPPORTED_TYPES)
        return refs

    def manifest_references(self) -> list[Descriptor]:
        """Index entries that must exist as manifests in the repository."""
        return [entry for entry in self.manifests if entry.media_type in SUPPORTED_TYPES]

    def effective_artifact_type(self) -> str | None:
        """The artifactType the referrers API reports for this manifest."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and self.media_type == OCI_MANIFEST:
            return self.config.media_type
        return None


def _invalid(message: str) -> RegistryError:
    return RegistryError(MANIFEST_INVALID, message)


def base_media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _string_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{what} must be a map of strings")
    return value


def parse_descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    try:
        parsed_digest = parse_digest(digest)
    except RegistryError as exc:
        raise _invalid(f"{where}.digest: {exc.message}") from exc
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType must be a string")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}.platform must be an object")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}.urls must be a list of strings")
    return Descriptor(
        media_type=media_type,
        digest=parsed_digest,
        size=size,
        artifact_type=artifact_type,
        annotations=_string_map(value.get("annotations"), f"{where}.annotations"),
        platform=platform,
        urls=tuple(urls),
    )


def _descriptor_list(value: Any, where: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise _invalid(f"{where} must be an array")
    return tuple(parse_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def _resolve_media_type(body: dict[str, Any], content_type: str | None) -> str:
    declared = body.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = base_media_type(content_type)
    if header in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or declared in (
        DOCKER_SCHEMA1,
        DOCKER_SCHEMA1_SIGNED,
    ):
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if header not in _GENERIC_CONTENT_TYPES:
        if header not in SUPPORTED_TYPES:
            raise _invalid(f"unsupported manifest media type: {header!r}")
        if declared is not None and declared != header:
            raise _invalid(
                f"Content-Type {header!r} does not match the manifest's mediaType {declared!r}"
            )
        return header
    if declared is not None:
        if declared not in SUPPORTED_TYPES:
            raise _invalid(f"unsupported manifest media type: {declared!r}")
        return declared
    # OCI allows omitting mediaType; infer from the shape.
    if "manifests" in body:
        return OCI_INDEX
    if "config" in body or "layers" in body:
        return OCI_MANIFEST
    raise _invalid("cannot determine the manifest media type")


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Validate ``payload`` against its media type; raise MANIFEST_INVALID on any defect."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: deep nesting
        raise _invalid(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _invalid("manifest must be a JSON object")
    # Exactly the integer 2: not 2.0, not true.
    if type(body.get("schemaVersion")) is not int or body["schemaVersion"] != 2:
        raise _invalid("schemaVersion must be 2")
    media_type = _resolve_media_type(body, content_type)
    is_index = media_type in INDEX_TYPES
    if is_index and ("layers" in body or "config" in body):
        raise _invalid("an index must not have config or layers")
    if not is_index and "manifests" in body:
        raise _invalid("an image manifest must not have manifests")
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    if is_index:
        manifests = _descriptor_list(body.get("manifests"), "manifests")
    else:
        if "config" not in body:
            raise _invalid("manifest has no config")
        config = parse_descriptor(body["config"], "config")
        layers = _descriptor_list(body.get("layers", []), "layers")
        if media_type == DOCKER_MANIFEST and "layers" not in body:
            raise _invalid("manifest has no layers")
    subject = None
    if body.get("subject") is not None:
        subject = parse_descriptor(body["subject"], "subject")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    return ParsedManifest(
        media_type=media_type,
        config=config,
        layers=layers,
        manifests=manifests,
        subject=subject,
        artifact_type=artifact_type,
        annotations=_string_map(body.get("annotations"), "annotations"),
        raw=body,
    )
