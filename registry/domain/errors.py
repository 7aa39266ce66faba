"""The one registry of OCI error codes, and the exception handlers raise.

HTTP code renders :class:`RegistryError` as ``{"errors": [...]}``; nothing
else decides statuses or codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    message: str
    status: int


BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404)
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 404)
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", "manifest invalid", 400)
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", "manifest unknown to registry", 404)
NAME_INVALID = ErrorCode("NAME_INVALID", "invalid repository name", 400)
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404)
SIZE_INVALID = ErrorCode("SIZE_INVALID", "provided length did not match content length", 400)
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", "authentication required", 401)
DENIED = ErrorCode("DENIED", "requested access to the resource is denied", 403)
UNSUPPORTED = ErrorCode("UNSUPPORTED", "the operation is unsupported", 405)
TOOMANYREQUESTS = ErrorCode("TOOMANYREQUESTS", "too many requests", 429)
RANGE_INVALID = ErrorCode("RANGE_INVALID", "invalid content range", 416)
TAG_INVALID = ErrorCode("TAG_INVALID", "manifest tag did not match URI", 400)
PAGINATION_NUMBER_INVALID = ErrorCode(
    "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400
)
MANIFEST_TOO_LARGE = ErrorCode("SIZE_INVALID", "manifest exceeds the size limit", 413)
BLOB_TOO_LARGE = ErrorCode("SIZE_INVALID", "blob exceeds the storage backend's size limit", 413)
UNAVAILABLE = ErrorCode("UNAVAILABLE", "service unavailable", 503)
# Not in the OCI list: a full disk is neither the client's fault nor a passing outage.
STORAGE_FULL = ErrorCode("STORAGE_FULL", "the registry's storage is full", 507)
INTERNAL = ErrorCode("UNKNOWN", "unknown error", 500)
NOT_FOUND = ErrorCode("NOT_FOUND", "not found", 404)
METHOD_UNKNOWN = ErrorCode("UNSUPPORTED", "the method is not allowed for this resource", 405)
CONFLICT = ErrorCode("CONFLICT", "the request conflicts with the current state", 409)
REQUEST_INVALID = ErrorCode("BAD_REQUEST", "the request is invalid", 400)


class RegistryError(Exception):
    """An error with an OCI code; ``detail`` is JSON-safe extra context."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}
