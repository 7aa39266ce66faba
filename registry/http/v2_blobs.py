"""Blob reads and blob uploads of the v2 API."""

from __future__ import annotations

import re
from collections.abc import Iterator

from anyio import CancelScope, to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry.db.engine import QuickReadUnavailable
from registry.domain.digests import Digest, parse_digest
from registry.domain.errors import (
    DIGEST_INVALID,
    RANGE_INVALID,
    SIZE_INVALID,
    RegistryError,
)
from registry.domain.names import check_name
from registry.http.access import AccessController, AccessRequest, Principal
from registry.http.bodies import SMALL_BODY, content_length, pump_into, read_exact
from registry.http.conditional import none_match, not_modified
from registry.http.errors import API_VERSION_HEADER
from registry.http.offload import Offloader
from registry.services.blobs import BlobInfo, BlobService
from registry.services.uploads import UploadService, UploadStatus

_BYTE_RANGE = re.compile(r"(\d*)-(\d*)")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(\d+|\*))?")
# A blob never changes under its digest.
_CACHE_CONTROL = "max-age=31536000"


def _headers(**extra: str) -> dict[str, str]:
    return {**API_VERSION_HEADER, **extra}


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _range_header(size: int) -> str:
    # Docker expects "0-0" for an empty upload rather than an empty range.
    return f"0-{max(size - 1, 0)}"


def _upload_headers(status: UploadStatus) -> dict[str, str]:
    return _headers(
        Location=upload_location(status.repository, status.id),
        Range=_range_header(status.size),
        **{"Docker-Upload-UUID": status.id, "Content-Length": "0"},
    )


def _created_headers(name: str, info: BlobInfo) -> dict[str, str]:
    return _headers(
        Location=f"/v2/{name}/blobs/{info.digest}",
        **{"Docker-Content-Digest": info.digest, "Content-Length": "0"},
    )


def _honoured_range(request: Request, etag: str) -> str | None:
    """The byte-range-spec of a Range this response applies, or None to send the whole blob.

    RFC 9110: a Range in an unknown unit MUST be ignored (14.2), and so must one whose
    If-Range does not strongly match the ETag (13.1.5); several ranges, which would need a
    multipart answer, are ignored as a server may ignore any Range.
    """
    header = request.headers.get("range")
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return spec


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """A single byte range as (start, end inclusive); None means unsatisfiable."""
    match = _BYTE_RANGE.fullmatch(spec.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
    else:  # suffix range: the last N bytes
        suffix = int(match.group(2))
        if suffix == 0:
            return None
        start, end = max(size - suffix, 0), size - 1
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


def _chunk_start(request: Request, length: int | None) -> int | None:
    """Where a chunk says it starts (Content-Range), checked against its length."""
    bounds = _chunk_bounds(request, length)
    return None if bounds is None else bounds[0]


def _chunk_bounds(request: Request, length: int | None) -> tuple[int, int] | None:
    """A chunk's first and last byte (Content-Range), checked against its length."""
    content_range = request.headers.get("content-range")
    if not content_range:
        return None
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None:
        raise RegistryError(RANGE_INVALID, f"invalid Content-Range: {content_range[:80]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RegistryError(RANGE_INVALID, "Content-Range end precedes its start")
    if length is not None and length != end - start + 1:
        raise RegistryError(SIZE_INVALID, "Content-Length does not match Content-Range")
    return start, end


class BlobRoutes:
    def __init__(
        self,
        access: AccessController,
        blobs: BlobService,
        uploads: UploadService,
        redirect: bool = False,
        offload: Offloader | None = None,
    ) -> None:
        self.offload = offload or Offloader()
        self.access = access
        self.blobs = blobs
        self.uploads = uploads
        self.redirect = redirect

    async def _authorize(self, request: Request, name: str, *actions: str) -> Principal:
        return await self.access.authorize(request, [AccessRequest("repository", name, actions)])

    # -- reads ---------------------------------------------------------------
    async def blob(self, request: Request, name: str, digest_text: str) -> Response:
        check_name(name)
        digest = parse_digest(digest_text)
        if request.method == "DELETE":
            await self._authorize(request, name, "delete")
            await to_thread.run_sync(self.blobs.delete, name, digest)
            return Response(status_code=202, headers=_headers(**{"Content-Length": "0"}))
        await self._authorize(request, name, "pull")
        try:
            info = self.blobs.stat(name, digest, quick=True)
        except QuickReadUnavailable:
            info = await self.offload(self.blobs.stat, name, digest)
        return await self._send(request, info)

    async def _send(self, request: Request, info: BlobInfo) -> Response:
        etag = f'"{info.digest}"'
        # Before Range and the redirect (RFC 9110 13.2.2): a cached copy needs no bytes.
        if none_match(request, etag):
            return not_modified(info.digest, etag, **{"Cache-Control": _CACHE_CONTROL})
        headers = _headers(
            **{
                "Docker-Content-Digest": info.digest,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
                "ETag": etag,
                "Cache-Control": _CACHE_CONTROL,
            }
        )
        start, end = 0, info.size - 1
        status = 200
        range_spec = _honoured_range(request, etag)
        if range_spec is not None and info.size > 0:
            parsed = _parse_range(range_spec, info.size)
            if parsed is None:
                raise RegistryError(
                    RANGE_INVALID, headers={"Content-Range": f"bytes */{info.size}"}
                )
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        length = end - start + 1 if info.size > 0 else 0
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if self.redirect and status == 200:
            url = await to_thread.run_sync(self.blobs.redirect_url, info)
            if url is not None:
                return RedirectResponse(url, status_code=307, headers=_headers())
        chunks: Iterator[bytes] = (
            iter(())
            if length == 0
            else await to_thread.run_sync(self.blobs.open, info, start, length)
        )
        return StreamingResponse(chunks, status_code=status, headers=headers)

    # -- uploads -------------------------------------------------------------
    async def start_upload(self, request: Request, name: str) -> Response:
        check_name(name)
        params = request.query_params
        mount, source = params.get("mount"), params.get("from")
        if mount is not None:
            return await self._mount_or_start(request, name, mount, source)
        principal = await self._authorize(request, name, "pull", "push")
        digest_text = params.get("digest")
        if digest_text is not None:
            digest = parse_digest(digest_text)
            return await self._monolithic(request, name, digest)
        status = await to_thread.run_sync(self.uploads.start, name, principal.subject)
        return Response(status_code=202, headers=_upload_headers(status))

    async def _monolithic(self, request: Request, name: str, digest: Digest) -> Response:
        """POST ?digest= with the whole blob: no session row, one commit."""
        length = content_length(request)
        if length is not None and length <= SMALL_BODY:
            data = await read_exact(request, length)
            info = await to_thread.run_sync(self.uploads.put_direct, name, data, digest)
            return Response(status_code=201, headers=_created_headers(name, info))
        appender = await to_thread.run_sync(self.uploads.open_direct, name, digest.algorithm)
        try:
            await pump_into(request, appender, content_length(request))
            info = await to_thread.run_sync(self.uploads.complete_appender, appender, digest)
        except BaseException:
            # Shielded: a request cancelled at shutdown must still release its lease.
            with CancelScope(shield=True):
                await to_thread.run_sync(appender.abandon)
            raise
        return Response(status_code=201, headers=_created_headers(name, info))

    async def _mount_or_start(
        self, request: Request, name: str, mount: str, source: str | None
    ) -> Response:
        digest: Digest | None = None
        try:
            digest = parse_digest(mount)
            if source is not None:
                check_name(source)
        except RegistryError:
            # Spec: a mount with invalid repository or digest arguments falls back to an upload.
            digest = None
        readable = []
        if digest is not None and source is not None:
            readable = [AccessRequest("repository", source, ("pull",))]
        principal = await self.access.authorize(
            request, [AccessRequest("repository", name, ("pull", "push"))], readable
        )
        # A mount needs pull on the source; without it, fall back to an upload.
        if (
            digest is not None
            and source is not None
            and principal.may("repository", source, "pull")
        ):
            info = await to_thread.run_sync(self.blobs.mount, name, source, digest)
            if info is not None:
                return Response(status_code=201, headers=_created_headers(name, info))
        status = await to_thread.run_sync(self.uploads.start, name, principal.subject)
        return Response(status_code=202, headers=_upload_headers(status))

    async def upload(self, request: Request, name: str, upload_id: str) -> Response:
        check_name(name)
        method = request.method
        if method in ("GET", "HEAD"):
            principal = await self._authorize(request, name, "pull")
            status = await to_thread.run_sync(
                self.uploads.status, name, upload_id, principal.subject
            )
            headers = _upload_headers(status)
            del headers["Content-Length"]  # never on a 204 (RFC 9110 section 8.6)
            return Response(status_code=204, headers=headers)
        if method == "DELETE":
            principal = await self._authorize(request, name, "pull", "push")
            await to_thread.run_sync(self.uploads.cancel, name, upload_id, principal.subject)
            return Response(status_code=204, headers=_headers())
        principal = await self._authorize(request, name, "pull", "push")
        if method == "PATCH":
            status = await self._append(request, name, upload_id, principal)
            return Response(status_code=202, headers=_upload_headers(status))
        # PUT: optional last chunk, then commit.
        digest_text = request.query_params.get("digest")
        if digest_text is None:
            raise RegistryError(DIGEST_INVALID, "the digest query parameter is required")
        digest = parse_digest(digest_text)
        status = UploadStatus(upload_id, name, 0)
        return await self._append_and_complete(request, status, principal, digest)

    async def _append_and_complete(
        self, request: Request, status: UploadStatus, principal: Principal, digest: Digest
    ) -> Response:
        length = content_length(request)
        has_body = (length or 0) > 0 or "chunked" in request.headers.get("transfer-encoding", "")
        if has_body and length is not None and length <= SMALL_BODY:
            # Small final chunk (most layers): read it, then one thread hand-off.
            start = _chunk_start(request, length)
            data = await read_exact(request, length)
            info = await to_thread.run_sync(
                self.uploads.put_small,
                status.repository, status.id, principal.subject, start, data, digest,
            )  # fmt: skip
        elif has_body:
            # The final chunk may carry Content-Range: an out-of-order one is 416, not appended.
            start = _chunk_start(request, length)
            appender = await to_thread.run_sync(
                self.uploads.open_final,
                status.repository, status.id, principal.subject, start, digest.algorithm,
            )  # fmt: skip
            try:
                await pump_into(request, appender, length)
                info = await to_thread.run_sync(self.uploads.complete_appender, appender, digest)
            except BaseException:
                # Shielded: a request cancelled at shutdown must still release its lease.
                with CancelScope(shield=True):
                    await to_thread.run_sync(appender.abandon)
                raise
        else:
            info = await to_thread.run_sync(
                self.uploads.complete, status.repository, status.id, principal.subject, digest
            )
        return Response(status_code=201, headers=_created_headers(status.repository, info))

    async def _append(
        self, request: Request, name: str, upload_id: str, principal: Principal
    ) -> UploadStatus:
        """A PATCH: append the body at Content-Range's start (if given) and record it."""
        expected = content_length(request)
        bounds = _chunk_bounds(request, expected)
        start = None if bounds is None else bounds[0]
        appender = await to_thread.run_sync(
            self.uploads.open_append, name, upload_id, principal.subject, start
        )
        if bounds is not None and expected is None:
            expected = bounds[1] - bounds[0] + 1
        try:
            await pump_into(request, appender, expected)
        except BaseException:
            # Shielded: a request cancelled at shutdown must still release its lease.
            with CancelScope(shield=True):
                await to_thread.run_sync(appender.abandon)
            raise
        return await to_thread.run_sync(appender.finish)
