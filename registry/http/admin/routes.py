"""The ``/admin/v1/`` endpoints: repositories, tags, manifests, inspection, retention,
garbage collection, usage and the audit log."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from starlette.responses import Response

from registry.domain.digests import parse_digest
from registry.domain.errors import MANIFEST_UNKNOWN, REQUEST_INVALID, RegistryError
from registry.domain.names import check_name, check_tag
from registry.http.admin import cursors
from registry.http.admin import schemas as s
from registry.http.admin.framework import Call, Endpoint, json_response
from registry.services.admin_catalog import CatalogService, ManifestInfo, RepositorySummary
from registry.services.admin_gc import GcControl, GcRunView
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.inspect import InspectService
from registry.services.manifests import ManifestService
from registry.services.retention import RetentionPlan, RetentionService, Rules

NAME = {"type": "string", "pattern": s.NAME_PATTERN, "maxLength": 255}
TAG = {"type": "string", "pattern": s.TAG_PATTERN}
DIGEST = {"type": "string", "pattern": s.DIGEST_PATTERN}
REFERENCE = {"type": "string", "maxLength": 200}
# Row ids are 32-bit integers on PostgreSQL; larger values must not reach a query.
MAX_ID = 2**31 - 1
POLICY_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def _page(
    items: list[Any], cursor: str | None, limit: int, endpoint: str, filters: dict[str, Any]
) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the cursor of the next (bound to ``filters``)."""
    offset = cursors.decode(cursor, endpoint, filters) or 0
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return chunk, cursors.encode(endpoint, filters, offset + limit) if more else None


def _policy_id(call: Call) -> int:
    raw = call.params["policy_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not 1 <= int(raw) <= MAX_ID:
        raise RegistryError(REQUEST_INVALID, f"invalid policy id: {raw[:50]!r}")
    return int(raw)


def _repository(summary: RepositorySummary) -> s.RepositoryOut:
    usage = summary.usage
    return s.RepositoryOut(
        name=summary.name,
        created_at=summary.created_at,
        last_push_at=summary.last_push_at,
        tag_count=summary.tag_count,
        manifest_count=summary.manifest_count,
        size_bytes=usage.total_bytes,
        exclusive_bytes=usage.exclusive_bytes,
        shared_bytes=usage.shared_bytes,
        manifest_bytes=usage.manifest_bytes,
    )


def _manifest(m: ManifestInfo) -> s.ManifestOut:
    return s.ManifestOut(
        digest=m.digest,
        media_type=m.media_type,
        artifact_type=m.artifact_type,
        tags=sorted(m.tags),
        platforms=m.platforms,
        children=m.children,
        subject=m.subject_digest,
        size_bytes=m.size,
        pushed_at=m.pushed_at,
        last_pulled_at=m.last_pulled_at,
    )


def _rules(policy: s.PolicyIn) -> Rules:
    return Rules(**policy.model_dump())


def _plan(plan: RetentionPlan, applied: bool) -> s.RetentionPlanOut:
    return s.RetentionPlanOut(
        applied=applied,
        tags=plan.tag_count,
        manifests=plan.manifest_count,
        bytes_freed=plan.bytes_freed,
        repositories=[
            s.RepositoryPlanOut(
                repository=r.repository,
                policies=r.policies,
                tags=[
                    s.PlannedTag(name=t.name, digest=t.digest, pushed_at=t.pushed_at)
                    for t in r.tags
                ],
                manifests=[
                    s.PlannedManifest(digest=m.digest, media_type=m.media_type, size=m.size)
                    for m in r.manifests
                ],
                bytes_freed=r.bytes_freed,
            )
            for r in plan.repositories
        ],
    )


def _gc_run(view: GcRunView) -> s.GcRunOut:
    return s.GcRunOut.model_validate(view, from_attributes=True)


class AdminApi:
    def __init__(
        self,
        catalog: CatalogService,
        manifests: ManifestService,
        inspector: InspectService,
        retention: RetentionService,
        gc: GcControl,
        usage: UsageService,
        audit: AuditService,
    ) -> None:
        self.catalog = catalog
        self.manifests = manifests
        self.inspector = inspector
        self.retention = retention
        self.gc = gc
        self.usage = usage
        self.audit = audit

    # -- repositories ------------------------------------------------------------------
    async def list_repositories(self, call: Call) -> Response:
        q: s.RepositoryQuery = call.query
        filters = {"filter": q.filter, "sort": q.sort, "order": q.order}
        cursors.decode(q.cursor, "repositories", filters)  # a bad cursor does no work
        found = await to_thread.run_sync(self.catalog.repositories, q.filter)
        keys = {
            "name": lambda r: r.name,
            "size": lambda r: (r.usage.total_bytes, r.name),
            "last_push": lambda r: (r.last_push_at is not None, r.last_push_at, r.name),
        }
        found.sort(key=keys[q.sort], reverse=q.order == "desc")
        items, cursor = _page(found, q.cursor, q.limit, "repositories", filters)
        return json_response(
            s.RepositoryPage(items=[_repository(r) for r in items], next_cursor=cursor)
        )

    async def show_repository(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        summary = await to_thread.run_sync(self.catalog.repository, name)
        return json_response(_repository(summary))

    async def delete_repository(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        actor = call.principal.subject
        result = await to_thread.run_sync(self.catalog.delete_repository, name, actor)
        return json_response(s.DeletionOut(deleted=name, details=result))

    # -- tags and manifests -------------------------------------------------------------
    async def list_tags(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        q: s.PageQuery = call.query
        filters = {"repository": name}
        cursors.decode(q.cursor, "tags", filters)
        contents = await to_thread.run_sync(self.catalog.contents, name)
        tags, cursor = _page(contents.tags, q.cursor, q.limit, "tags", filters)
        items = [
            s.TagOut(
                name=t.name,
                digest=t.manifest.digest,
                media_type=t.manifest.media_type,
                platforms=t.manifest.platforms,
                size_bytes=t.manifest.size,
                pushed_at=t.updated_at,
                last_pulled_at=t.manifest.last_pulled_at,
            )
            for t in tags
        ]
        return json_response(s.TagPage(repository=name, items=items, next_cursor=cursor))

    async def list_manifests(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        q: s.ManifestQuery = call.query
        filters = {"repository": name, "untagged": q.untagged}
        cursors.decode(q.cursor, "manifests", filters)
        contents = await to_thread.run_sync(self.catalog.contents, name)
        found = sorted(contents.manifests.values(), key=lambda m: (m.pushed_at, m.digest))
        found.reverse()
        if q.untagged is not None:
            found = [m for m in found if (not m.tags) == q.untagged]
        chunk, cursor = _page(found, q.cursor, q.limit, "manifests", filters)
        items = [_manifest(m) for m in chunk]
        return json_response(s.ManifestPage(repository=name, items=items, next_cursor=cursor))

    async def _delete(
        self, call: Call, name: str, reference: str, action: str, target: str
    ) -> Response:
        """Delete a tag or a manifest (by digest), then record it in the audit log."""
        try:
            await to_thread.run_sync(self.manifests.delete, name, reference)
        except RegistryError as exc:
            if exc.code is not MANIFEST_UNKNOWN:
                raise
            # The v2 wording ("manifest unknown") would not say which tag was missing.
            kind = "tag" if action.startswith("tag") else "manifest"
            raise RegistryError(
                MANIFEST_UNKNOWN, f"no {kind} {reference} in {name}", detail=exc.detail
            ) from exc
        await to_thread.run_sync(self.audit.record, call.principal.subject, action, target, None)
        return json_response(s.DeletionOut(deleted=target))

    async def delete_tag(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        tag = check_tag(call.params["tag"])
        return await self._delete(call, name, tag, "tag.delete", f"{name}:{tag}")

    async def delete_manifest(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        digest = str(parse_digest(call.params["digest"]))
        return await self._delete(call, name, digest, "manifest.delete", f"{name}@{digest}")

    async def inspect(self, call: Call) -> Response:
        name = check_name(call.params["name"])
        q: s.InspectQuery = call.query
        view = await to_thread.run_sync(
            self.inspector.inspect, name, call.params["reference"], q.platform
        )
        return json_response(s.InspectOut.model_validate(view, from_attributes=True))

    # -- retention -----------------------------------------------------------------------
    async def list_policies(self, call: Call) -> Response:
        stored = await to_thread.run_sync(self.retention.policies)
        return json_response(s.PolicyList(items=[self._policy_out(p) for p in stored]))

    @staticmethod
    def _policy_out(stored: Any) -> s.PolicyOut:
        return s.PolicyOut(
            id=stored.id,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            **{k: getattr(stored.rules, k) for k in s.PolicyIn.model_fields},
        )

    async def create_policy(self, call: Call) -> Response:
        stored = await to_thread.run_sync(
            self.retention.save, _rules(call.body), call.principal.subject, None
        )
        return json_response(self._policy_out(stored), 201)

    async def show_policy(self, call: Call) -> Response:
        stored = await to_thread.run_sync(self.retention.policy, _policy_id(call))
        return json_response(self._policy_out(stored))

    async def replace_policy(self, call: Call) -> Response:
        stored = await to_thread.run_sync(
            self.retention.save, _rules(call.body), call.principal.subject, _policy_id(call)
        )
        return json_response(self._policy_out(stored))

    async def delete_policy(self, call: Call) -> Response:
        await to_thread.run_sync(self.retention.remove, _policy_id(call), call.principal.subject)
        return Response(status_code=204)

    def _selected_rules(self, run: s.RetentionRunIn) -> list[Rules]:
        if run.policy is not None:
            return [_rules(run.policy)]
        if run.policy_ids is not None:
            return [self.retention.policy(i).rules for i in run.policy_ids]
        return [p.rules for p in self.retention.policies()]

    async def preview(self, call: Call) -> Response:
        body: s.RetentionRunIn = call.body
        rules = await to_thread.run_sync(self._selected_rules, body)
        plan = await to_thread.run_sync(self.retention.plan, rules, None, body.repositories)
        return json_response(_plan(plan, applied=False))

    async def apply(self, call: Call) -> Response:
        body: s.RetentionRunIn = call.body
        rules = await to_thread.run_sync(self._selected_rules, body)
        plan = await to_thread.run_sync(
            self.retention.apply, rules, call.principal.subject, body.repositories
        )
        return json_response(_plan(plan, applied=True))

    # -- garbage collection, usage, audit -----------------------------------------------------
    async def gc_status(self, call: Call) -> Response:
        status = await to_thread.run_sync(self.gc.status)
        return json_response(
            s.GcStatusOut(
                running=_gc_run(status.running) if status.running else None,
                last=_gc_run(status.last) if status.last else None,
                pending_reviews=status.pending_reviews,
                review_delay_seconds=status.review_delay_seconds,
            )
        )

    async def gc_runs(self, call: Call) -> Response:
        q: s.PageQuery = call.query
        before = cursors.decode(q.cursor, "gc_runs", {})
        runs, after = await to_thread.run_sync(self.gc.runs, q.limit, before)
        cursor = cursors.encode("gc_runs", {}, after) if after is not None else None
        return json_response(s.GcRunPage(items=[_gc_run(r) for r in runs], next_cursor=cursor))

    async def gc_trigger(self, call: Call) -> Response:
        body: s.GcRunIn = call.body
        view = await to_thread.run_sync(
            lambda: self.gc.trigger(call.principal.subject, dry_run=body.dry_run, wait=body.wait)
        )
        return json_response(_gc_run(view), 200 if body.wait else 202)

    async def usage_report(self, call: Call) -> Response:
        report = await to_thread.run_sync(self.usage.report)
        repos = sorted(report.repositories, key=lambda r: (-r.total_bytes, r.name))
        return json_response(
            s.UsageOut(
                total_bytes=report.total_bytes,
                blob_count=report.blob_count,
                blob_bytes=report.blob_bytes,
                manifest_count=report.manifest_count,
                manifest_bytes=report.manifest_bytes,
                unreferenced_blob_count=report.unreferenced_blob_count,
                unreferenced_blob_bytes=report.unreferenced_blob_bytes,
                repositories=[
                    s.RepositoryUsageOut(
                        name=r.name,
                        total_bytes=r.total_bytes,
                        exclusive_bytes=r.exclusive_bytes,
                        shared_bytes=r.shared_bytes,
                        manifest_bytes=r.manifest_bytes,
                    )
                    for r in repos
                ],
            )
        )

    async def audit_log(self, call: Call) -> Response:
        q: s.AuditQuery = call.query
        filters = {"action": q.action}
        before = cursors.decode(q.cursor, "audit", filters)
        entries, after = await to_thread.run_sync(self.audit.entries, q.limit, before, q.action)
        items = [s.AuditOut.model_validate(e, from_attributes=True) for e in entries]
        cursor = cursors.encode("audit", filters, after) if after is not None else None
        return json_response(s.AuditPage(items=items, next_cursor=cursor))

    # -- the table -------------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint]:
        repo = "/repositories/{name}"
        E = Endpoint
        return [
            E("GET", "/repositories", "listRepositories", "List repositories",
              self.list_repositories, "repositories", query=s.RepositoryQuery,
              response=s.RepositoryPage),
            E("GET", repo + "/-/tags", "listTags", "List tags with digest, platforms, size",
              self.list_tags, "tags", query=s.PageQuery, response=s.TagPage,
              param_schemas={"name": NAME}),
            E("DELETE", repo + "/-/tags/{tag}", "deleteTag", "Delete a tag (not its manifest)",
              self.delete_tag, "tags", response=s.DeletionOut,
              param_schemas={"name": NAME, "tag": TAG}),
            E("GET", repo + "/-/manifests", "listManifests", "List manifests",
              self.list_manifests, "manifests", query=s.ManifestQuery, response=s.ManifestPage,
              param_schemas={"name": NAME}),
            E("DELETE", repo + "/-/manifests/{digest}", "deleteManifest",
              "Delete a manifest and its tags", self.delete_manifest, "manifests",
              response=s.DeletionOut, param_schemas={"name": NAME, "digest": DIGEST}),
            E("GET", repo + "/-/inspect/{reference}", "inspectImage",
              "Inspect an image or index by tag or digest", self.inspect, "manifests",
              query=s.InspectQuery, response=s.InspectOut,
              param_schemas={"name": NAME, "reference": REFERENCE}),
            E("GET", repo, "showRepository", "Show a repository", self.show_repository,
              "repositories", response=s.RepositoryOut, param_schemas={"name": NAME}),
            E("DELETE", repo, "deleteRepository",
              "Delete a repository with its tags and manifests (GC frees blobs)",
              self.delete_repository, "repositories", response=s.DeletionOut,
              param_schemas={"name": NAME}),
            E("GET", "/retention/policies", "listRetentionPolicies", "List retention policies",
              self.list_policies, "retention", response=s.PolicyList),
            E("POST", "/retention/policies", "createRetentionPolicy", "Store a policy",
              self.create_policy, "retention", body=s.PolicyIn, response=s.PolicyOut,
              status=201),
            E("GET", "/retention/policies/{policy_id}", "showRetentionPolicy", "Show a policy",
              self.show_policy, "retention", response=s.PolicyOut,
              param_schemas={"policy_id": POLICY_ID}),
            E("PUT", "/retention/policies/{policy_id}", "replaceRetentionPolicy",
              "Replace a policy", self.replace_policy, "retention", body=s.PolicyIn,
              response=s.PolicyOut, param_schemas={"policy_id": POLICY_ID}),
            E("DELETE", "/retention/policies/{policy_id}", "deleteRetentionPolicy",
              "Delete a policy", self.delete_policy, "retention", status=204,
              param_schemas={"policy_id": POLICY_ID}),
            E("POST", "/retention/preview", "previewRetention",
              "What policies would delete and the bytes that would be freed", self.preview,
              "retention", body=s.RetentionRunIn, response=s.RetentionPlanOut),
            E("POST", "/retention/apply", "applyRetention",
              "Delete what policies select (then GC frees the bytes)", self.apply,
              "retention", body=s.RetentionRunIn, response=s.RetentionPlanOut),
            E("GET", "/gc/status", "gcStatus", "Garbage collection status", self.gc_status,
              "gc", response=s.GcStatusOut),
            E("GET", "/gc/runs", "listGcRuns", "Garbage collection history", self.gc_runs,
              "gc", query=s.PageQuery, response=s.GcRunPage),
            E("POST", "/gc/runs", "runGc", "Run garbage collection now", self.gc_trigger,
              "gc", body=s.GcRunIn, response=s.GcRunOut, other_statuses=(202,)),
            E("GET", "/usage", "storageUsage", "Storage usage, total and per repository",
              self.usage_report, "usage", response=s.UsageOut),
            E("GET", "/audit", "auditLog", "Audit log, newest first", self.audit_log,
              "audit", query=s.AuditQuery, response=s.AuditPage),
        ]  # fmt: skip
