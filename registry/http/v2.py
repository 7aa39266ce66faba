"""The ``/v2/`` router: one dispatcher over the name-aware path parser."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from registry.domain.digests import parse_digest
from registry.domain.errors import (
    BLOB_UPLOAD_UNKNOWN,
    METHOD_UNKNOWN,
    NOT_FOUND,
    RegistryError,
)
from registry.domain.names import check_name, check_tag
from registry.http.access import AccessController
from registry.http.errors import API_VERSION_HEADER
from registry.http.paths import V2Path, parse_v2_path
from registry.http.v2_blobs import BlobRoutes
from registry.http.v2_manifests import ManifestRoutes

_METHODS: dict[str, frozenset[str]] = {
    "blob": frozenset({"GET", "HEAD", "DELETE"}),
    "uploads": frozenset({"POST"}),
    "upload": frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"}),
    "manifest": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "tags": frozenset({"GET", "HEAD"}),
    "referrers": frozenset({"GET", "HEAD"}),
}
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _explain_invalid(path: V2Path) -> RegistryError:
    """Raise the grammar error of the part that broke it."""
    check_name(path.name)
    if path.kind == "manifest" and path.reference is not None:
        if ":" in path.reference:
            parse_digest(path.reference)
        check_tag(path.reference)
    if path.digest is not None:
        parse_digest(path.digest)
    if path.kind == "upload":
        return RegistryError(BLOB_UPLOAD_UNKNOWN)
    return RegistryError(NOT_FOUND)


class V2Router:
    def __init__(
        self, access: AccessController, blobs: BlobRoutes, manifests: ManifestRoutes
    ) -> None:
        self.access = access
        self.blobs = blobs
        self.manifests = manifests

    async def base(self, request: Request) -> Response:
        await self.access.authorize(request, [])
        return Response(b"{}", media_type="application/json", headers=dict(API_VERSION_HEADER))

    async def dispatch(self, request: Request) -> Response:
        rest: str = request.path_params["rest"]
        if rest == "":
            if request.method not in ("GET", "HEAD"):
                raise RegistryError(METHOD_UNKNOWN, headers={"Allow": "GET, HEAD"})
            return await self.base(request)
        if rest == "_catalog":
            if request.method not in ("GET", "HEAD"):
                raise RegistryError(METHOD_UNKNOWN, headers={"Allow": "GET, HEAD"})
            return await self.manifests.catalog(request)
        path = parse_v2_path(rest)
        if path is None:
            raise RegistryError(NOT_FOUND, f"no such endpoint: /v2/{rest[:200]}")
        if not path.valid:
            raise _explain_invalid(path)
        if request.method not in _METHODS[path.kind]:
            raise RegistryError(
                METHOD_UNKNOWN, headers={"Allow": ", ".join(sorted(_METHODS[path.kind]))}
            )
        if path.kind == "manifest":
            assert path.reference is not None
            return await self.manifests.manifest(request, path.name, path.reference)
        if path.kind == "blob":
            assert path.digest is not None
            return await self.blobs.blob(request, path.name, path.digest)
        if path.kind == "uploads":
            return await self.blobs.start_upload(request, path.name)
        if path.kind == "upload":
            assert path.upload is not None
            return await self.blobs.upload(request, path.name, path.upload)
        if path.kind == "tags":
            return await self.manifests.tags(request, path.name)
        assert path.digest is not None
        return await self.manifests.referrers(request, path.name, path.digest)

    def routes(self) -> list[BaseRoute]:
        # One catch-all route: Starlette tries routes in order with a regex each,
        # which cost a quarter of a manifest GET when /v2 had several.
        return [
            Route("/v2/{rest:path}", self.dispatch, methods=ALL_METHODS),
            Route("/v2", self.base, methods=["GET", "HEAD"]),
        ]
