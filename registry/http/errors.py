"""The one place that turns errors into ``{"errors": [...]}`` responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.domain.errors import (
    INTERNAL,
    METHOD_UNKNOWN,
    NOT_FOUND,
    REQUEST_INVALID,
    ErrorCode,
    RegistryError,
)

log = logging.getLogger("lading.http")

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


def error_response(exc: RegistryError, method: str = "GET") -> Response:
    headers = {**API_VERSION_HEADER, **exc.headers}
    if method == "HEAD":
        # HEAD answers carry no body, so no body length either.
        return Response(status_code=exc.code.status, headers=headers)
    return JSONResponse(exc.body(), status_code=exc.code.status, headers=headers)


async def registry_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    if exc.code.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc, request.method)


_HTTP_CODES: dict[int, ErrorCode] = {404: NOT_FOUND, 405: METHOD_UNKNOWN}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code)
    if code is None:
        code = ErrorCode(REQUEST_INVALID.code, str(exc.detail), exc.status_code)
    return error_response(RegistryError(code, str(exc.detail)), request.method)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(RegistryError(INTERNAL, "internal server error"), request.method)
