"""Request and response models of the admin API; the OpenAPI document is built from them.

Requests are strict (``extra="forbid"``): an unknown field is an error, never ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.domain.tag_patterns import TagPattern

NAME_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^sha(256:[a-f0-9]{64}|512:[a-f0-9]{128})$"
# Printable ASCII: PostgreSQL refuses NUL in text, and control characters are never meant.
PRINTABLE = r"^[\x20-\x7e]*$"


RepositoryName = Annotated[str, Field(max_length=255, pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- query strings -------------------------------------------------------------------


class PageQuery(Strict):
    limit: int = Field(100, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        None,
        max_length=200,
        description="`next_cursor` of the previous page, sent with the same filter parameters.",
    )


class RepositoryQuery(PageQuery):
    filter: str | None = Field(
        None,
        max_length=255,
        description="Substring of the name, or an fnmatch pattern such as `team/*`.",
    )
    sort: Literal["name", "size", "last_push"] = "name"
    order: Literal["asc", "desc"] = "asc"


class ManifestQuery(PageQuery):
    untagged: bool | None = Field(None, description="Only untagged (true) or tagged (false).")


class InspectQuery(Strict):
    platform: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="`os/arch[/variant]`: inspect that image of an index.",
    )


class AuditQuery(PageQuery):
    action: str | None = Field(
        None, min_length=1, max_length=64, pattern=PRINTABLE, description="Only this action."
    )


class NoQuery(Strict):
    pass


# -- bodies --------------------------------------------------------------------------


class PolicyIn(Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    repository_pattern: str = Field(
        min_length=1,
        max_length=255,
        pattern=PRINTABLE,
        description="fnmatch-style, e.g. `team/*`.",
    )
    keep_newest: int | None = Field(None, ge=0, le=1_000_000)
    keep_regex: str | None = Field(
        None,
        max_length=512,
        pattern=PRINTABLE,
        description="Tags fully matching this regex are kept.",
    )
    delete_older_than_days: float | None = Field(None, ge=0, le=36500, allow_inf_nan=False)
    delete_untagged: bool = False

    @field_validator("keep_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            TagPattern(value)  # TagPatternError (a ValueError) says why it is refused
        return value

    @model_validator(mode="after")
    def _has_a_rule(self) -> PolicyIn:
        if (
            self.keep_newest is None
            and self.keep_regex is None
            and self.delete_older_than_days is None
            and not self.delete_untagged
        ):
            raise ValueError(
                "a policy needs keep_newest, keep_regex, delete_older_than_days or delete_untagged"
            )
        return self


class RetentionRunIn(Strict):
    """Exactly one of ``policy_ids`` (stored policies), ``policy`` (ad hoc) or ``all``."""

    policy_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        None, min_length=1, max_length=100
    )
    policy: PolicyIn | None = None
    all: bool = False
    repositories: list[RepositoryName] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Only these repositories (of those the policies match): lets a client"
        " apply a plan in steps and show progress.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RetentionRunIn:
        given = sum([self.policy_ids is not None, self.policy is not None, self.all])
        if given != 1:
            raise ValueError("give exactly one of policy_ids, policy or all=true")
        return self


class GcRunIn(Strict):
    dry_run: bool = False
    wait: bool = Field(
        False, description="Answer when the pass has finished (200), not at once (202)."
    )


# -- responses -----------------------------------------------------------------------


class RepositoryOut(BaseModel):
    name: str
    created_at: dt.datetime
    last_push_at: dt.datetime | None
    tag_count: int
    manifest_count: int
    size_bytes: int = Field(description="Manifest bytes plus every blob it links or references.")
    exclusive_bytes: int = Field(description="Blob bytes no other repository holds.")
    shared_bytes: int = Field(description="Blob bytes other repositories hold too.")
    manifest_bytes: int


class RepositoryPage(BaseModel):
    items: list[RepositoryOut]
    next_cursor: str | None


class TagOut(BaseModel):
    name: str
    digest: str
    media_type: str
    platforms: list[str]
    size_bytes: int = Field(description="Manifest, config and layers (an index: all children).")
    pushed_at: dt.datetime
    last_pulled_at: dt.datetime | None


class TagPage(BaseModel):
    repository: str
    items: list[TagOut]
    next_cursor: str | None


class ManifestOut(BaseModel):
    digest: str
    media_type: str
    artifact_type: str | None
    tags: list[str]
    platforms: list[str]
    children: list[str]
    subject: str | None
    size_bytes: int
    pushed_at: dt.datetime
    last_pulled_at: dt.datetime | None


class ManifestPage(BaseModel):
    repository: str
    items: list[ManifestOut]
    next_cursor: str | None


class DeletionOut(BaseModel):
    deleted: str
    details: dict[str, Any] = Field(default_factory=dict)


class LayerOut(BaseModel):
    digest: str
    media_type: str
    size: int


class PlatformOut(BaseModel):
    platform: str | None
    digest: str
    media_type: str
    size: int


class InspectOut(BaseModel):
    repository: str
    digest: str
    media_type: str
    manifest_size: int
    artifact_type: str | None
    platforms: list[PlatformOut] | None = Field(description="Set for an image index.")
    platform: str | None
    config_digest: str | None
    config: dict[str, Any]
    created: str | None
    author: str | None
    history: list[dict[str, Any]]
    layers: list[LayerOut]
    total_size: int
    annotations: dict[str, str] | None
    referrers: list[dict[str, Any]]


class PolicyOut(PolicyIn):
    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime


class PolicyList(BaseModel):
    items: list[PolicyOut]


class PlannedTag(BaseModel):
    name: str
    digest: str
    pushed_at: dt.datetime


class PlannedManifest(BaseModel):
    digest: str
    media_type: str
    size: int


class RepositoryPlanOut(BaseModel):
    repository: str
    policies: list[str]
    tags: list[PlannedTag]
    manifests: list[PlannedManifest]
    bytes_freed: int


class RetentionPlanOut(BaseModel):
    applied: bool
    tags: int
    manifests: int
    bytes_freed: int = Field(
        description="Bytes only the departing manifests use; blobs are freed by the next GC."
    )
    repositories: list[RepositoryPlanOut]


class GcRunOut(BaseModel):
    id: int
    status: str
    trigger: str
    dry_run: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None
    manifests_deleted: int
    blobs_deleted: int
    links_deleted: int
    uploads_deleted: int
    objects_freed: int
    bytes_freed: int
    error: str | None


class GcRunPage(BaseModel):
    items: list[GcRunOut]
    next_cursor: str | None


class GcStatusOut(BaseModel):
    running: GcRunOut | None
    last: GcRunOut | None
    pending_reviews: int
    review_delay_seconds: float


class RepositoryUsageOut(BaseModel):
    name: str
    total_bytes: int
    exclusive_bytes: int
    shared_bytes: int
    manifest_bytes: int


class UsageOut(BaseModel):
    total_bytes: int
    blob_count: int
    blob_bytes: int
    manifest_count: int
    manifest_bytes: int
    unreferenced_blob_count: int
    unreferenced_blob_bytes: int
    repositories: list[RepositoryUsageOut]


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class ErrorEntry(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorOut(BaseModel):
    errors: list[ErrorEntry]
