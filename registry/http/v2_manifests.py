"""Manifests, referrers, tag lists and the catalog of the v2 API."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from anyio import to_thread
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from registry.db.engine import QuickReadUnavailable
from registry.domain.digests import parse_digest
from registry.domain.errors import REQUEST_INVALID, UNSUPPORTED, RegistryError
from registry.domain.manifests import OCI_INDEX
from registry.domain.names import check_name
from registry.domain.pagination import parse_page
from registry.http.access import AccessController, AccessRequest
from registry.http.bodies import read_limited
from registry.http.conditional import none_match, not_modified
from registry.http.errors import API_VERSION_HEADER
from registry.http.offload import Offloader
from registry.services.listing import Listing, ListingService
from registry.services.manifests import ManifestService, index_document


def _json(body: object, **headers: str) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=200,
        media_type="application/json",
        headers={**API_VERSION_HEADER, **headers},
    )


def _link(path: str, listing: Listing, limit: int | None) -> dict[str, str]:
    if listing.next_last is None:
        return {}
    query: dict[str, str | int] = {"last": listing.next_last}
    if limit is not None:
        query = {"n": limit, "last": listing.next_last}
    return {"Link": f'<{path}?{urlencode(query)}>; rel="next"'}


class ManifestRoutes:
    def __init__(
        self,
        access: AccessController,
        manifests: ManifestService,
        listing: ListingService,
        page_cap: int,
        offload: Offloader | None = None,
    ) -> None:
        self.offload = offload or Offloader()
        self.access = access
        self.manifests = manifests
        self.listing = listing
        self.page_cap = page_cap

    async def manifest(self, request: Request, name: str, reference: str) -> Response:
        check_name(name)
        method = request.method
        if method in ("GET", "HEAD"):
            await self.access.authorize(request, [AccessRequest("repository", name, ("pull",))])
            try:
                record = self.manifests.resolve(name, reference, quick=True)
            except QuickReadUnavailable:
                record = await self.offload(self.manifests.resolve, name, reference)
            etag = f'"{record.digest}"'
            # After authorization and resolve: a 304 never reveals what a 401/404 hides.
            if none_match(request, etag):
                response = not_modified(record.digest, etag)
                if method == "GET":
                    # A revalidated GET is a pull whose client already holds the bytes.
                    response.background = self._pulled(record.id)
                return response
            headers = {
                **API_VERSION_HEADER,
                "Docker-Content-Digest": record.digest,
                "Content-Type": record.media_type,
                "Content-Length": str(record.size),
                "ETag": etag,
            }
            if method == "HEAD":
                return Response(status_code=200, headers=headers)
            payload = self.manifests.cache.get(record.cache_key)
            if payload is None:
                payload = await self.offload(self.manifests.payload, record)
            return Response(
                payload, status_code=200, headers=headers, background=self._pulled(record.id)
            )
        if method == "PUT":
            await self.access.authorize(
                request, [AccessRequest("repository", name, ("pull", "push"))]
            )
            payload = await read_limited(request, self.manifests.max_size)
            record = await to_thread.run_sync(
                self.manifests.put, name, reference, request.headers.get("content-type"), payload
            )
            headers = {
                **API_VERSION_HEADER,
                "Location": f"/v2/{name}/manifests/{record.digest}",
                "Docker-Content-Digest": record.digest,
                "Content-Length": "0",
            }
            if record.subject_digest:
                headers["OCI-Subject"] = record.subject_digest
            return Response(status_code=201, headers=headers)
        if method == "DELETE":
            await self.access.authorize(request, [AccessRequest("repository", name, ("delete",))])
            await to_thread.run_sync(self.manifests.delete, name, reference)
            return Response(status_code=202, headers={**API_VERSION_HEADER, "Content-Length": "0"})
        raise RegistryError(UNSUPPORTED)

    def _pulled(self, manifest_id: int) -> BackgroundTask | None:
        """Record the pull after the response, when this process has not lately."""
        if self.manifests.pull_due(manifest_id):
            return BackgroundTask(to_thread.run_sync, self.manifests.record_pull, manifest_id)
        return None

    async def referrers(self, request: Request, name: str, digest_text: str) -> Response:
        check_name(name)
        digest = parse_digest(digest_text)
        await self.access.authorize(request, [AccessRequest("repository", name, ("pull",))])
        artifact_type = request.query_params.get("artifactType") or None
        if artifact_type is not None and (
            len(artifact_type) > 255 or not artifact_type.isprintable()
        ):
            raise RegistryError(REQUEST_INVALID, "invalid artifactType")
        descriptors = await to_thread.run_sync(
            self.manifests.referrers, name, digest, artifact_type
        )
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        response = _json(index_document(descriptors), **headers)
        response.headers["Content-Type"] = OCI_INDEX
        return response

    async def tags(self, request: Request, name: str) -> Response:
        check_name(name)
        await self.access.authorize(request, [AccessRequest("repository", name, ("pull",))])
        params = request.query_params
        page = parse_page(params.get("n"), params.get("last"), self.page_cap)
        listing = await to_thread.run_sync(self.listing.tags, name, page)
        return _json(
            {"name": name, "tags": listing.items},
            **_link(f"/v2/{name}/tags/list", listing, page.limit),
        )

    async def catalog(self, request: Request) -> Response:
        principal = await self.access.authorize(
            request, [AccessRequest("registry", "catalog", ("*",))]
        )
        params = request.query_params
        page = parse_page(params.get("n"), params.get("last"), self.page_cap)
        listing = await to_thread.run_sync(self.listing.repositories, page)
        items = listing.items
        if not principal.unrestricted:
            items = await self.access.visible_repositories(principal, items)
        return _json({"repositories": items}, **_link("/v2/_catalog", listing, page.limit))
