"""A small endpoint table for the admin API: one source for routing, validation and OpenAPI.

Repository names contain ``/``, so paths put a ``/-/`` separator after the name (a name
component cannot be ``-``), as GitLab does; the name may also be sent with ``%2F``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from registry.domain.errors import (
    MANIFEST_TOO_LARGE,
    METHOD_UNKNOWN,
    NOT_FOUND,
    REQUEST_INVALID,
    ErrorCode,
    RegistryError,
)
from registry.http.admin.auth import AdminAuthenticator, AdminPrincipal
from registry.http.admin.schemas import NoQuery
from registry.http.bodies import read_limited

VALIDATION_FAILED = ErrorCode("VALIDATION_FAILED", "the request does not match its schema", 422)
MAX_BODY = 1 << 20
PREFIX = "/admin/v1"


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the caller, path parameters and the validated query and body."""

    request: Request
    principal: AdminPrincipal
    params: dict[str, str]
    query: Any
    body: Any


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # OpenAPI template below PREFIX, e.g. "/repositories/{name}/-/tags"
    operation_id: str
    summary: str
    handler: Handler
    tag: str
    query: type[BaseModel] = NoQuery
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    other_statuses: tuple[int, ...] = ()
    param_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    authenticated: bool = True

    def pattern(self) -> re.Pattern[str]:
        regex = ""
        for part in re.split(r"(\{\w+\})", self.path):
            if part.startswith("{"):
                name = part[1:-1]
                # The repository name may hold "/": it ends at "/-/" or at the end.
                regex += f"(?P<{name}>(?:(?!/-/).)+)" if name == "name" else f"(?P<{name}>[^/]+)"
            else:
                regex += re.escape(part)
        return re.compile(regex)


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> Response:
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    return Response(
        json.dumps(data, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


def validation_error(exc: ValidationError, where: str) -> RegistryError:
    problems = [
        {"loc": [where, *[str(p) for p in err["loc"]]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [where], "msg": "invalid"}
    message = f"{'.'.join(first['loc'])}: {first['msg']}"
    return RegistryError(VALIDATION_FAILED, message, detail=problems)


def _parse_query(endpoint: Endpoint, request: Request) -> BaseModel:
    raw: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in raw:
            raise RegistryError(VALIDATION_FAILED, f"query parameter {key!r} given more than once")
        raw[key] = value
    try:
        return endpoint.query.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, "query") from exc


async def _parse_body(endpoint: Endpoint, request: Request) -> BaseModel | None:
    if endpoint.body is None:
        return None
    try:
        data = await read_limited(request, MAX_BODY)
    except RegistryError as exc:
        if exc.code is not MANIFEST_TOO_LARGE:
            raise
        # The shared reader speaks of manifests; this is an admin request body.
        raise RegistryError(
            MANIFEST_TOO_LARGE, f"the request body exceeds {MAX_BODY} bytes", detail=exc.detail
        ) from exc
    if not data.strip():
        data = b"{}"
    try:
        json.loads(data)
    except ValueError as exc:
        raise RegistryError(REQUEST_INVALID, f"the body is not JSON: {exc}") from exc
    try:
        # Strict, as documented: "3" is not a number and 1 is not true.
        return endpoint.body.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, "body") from exc


class AdminRouter:
    def __init__(self, endpoints: list[Endpoint], authenticator: AdminAuthenticator) -> None:
        self.endpoints = endpoints
        self.authenticator = authenticator
        self._compiled = [(e, e.pattern()) for e in endpoints]

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        rest = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        allowed: list[str] = []
        for endpoint, pattern in self._compiled:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            if endpoint.method != request.method:
                allowed.append(endpoint.method)
                continue
            principal = (
                await self.authenticator.authenticate(request)
                if endpoint.authenticated
                else AdminPrincipal("anonymous", "anonymous")
            )
            query = _parse_query(endpoint, request)
            body = await _parse_body(endpoint, request)
            call = Call(request, principal, match.groupdict(), query, body)
            response = await endpoint.handler(call)
            # Admin answers hold secrets (a new robot's) and private data: no cache keeps them.
            response.headers.setdefault("Cache-Control", "no-store")
            return response
        if allowed:
            raise RegistryError(METHOD_UNKNOWN, headers={"Allow": ", ".join(sorted(allowed))})
        raise RegistryError(NOT_FOUND, f"no such admin endpoint: {path[:200]}")
