"""The OpenAPI 3.1 document of the admin API, built from the endpoint table and models."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from registry.http.admin.framework import PREFIX, Endpoint
from registry.http.admin.schemas import ErrorOut

_ERROR_STATUSES = {
    400: "Malformed request (bad JSON, invalid name, tag or digest)",
    401: "Missing or invalid admin credentials",
    403: "Authenticated, but not an administrator",
    404: "No such resource",
    409: "Conflicts with the current state",
    422: "The query or body does not match its schema",
    429: "Too many failed sign-in attempts from this address; retry after Retry-After seconds",
}
# Statuses of the sign-in itself, absent from operations that need no credentials.
_AUTH_STATUSES = (401, 403, 429)


def build_document(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ErrorOut, "serialization")
    ]
    for e in endpoints:
        if e.body is not None:
            models.append((e.body, "validation"))
        if e.response is not None:
            models.append((e.response, "serialization"))
        models.append((e.query, "validation"))
    refs, defs = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    error_ref = refs[(ErrorOut, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            "tags": [e.tag],
            "parameters": _path_parameters(e) + _query_parameters(e),
            "responses": _responses(e, refs, error_ref),
        }
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(e.body, "validation")]}},
            }
        if not e.authenticated:
            operation["security"] = []
        paths.setdefault(PREFIX + e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lading admin API",
            "version": version,
            "description": (
                "Cleanup, usage, inspection, accounts, robot tokens and permissions of a"
                " Lading registry. Repository names contain `/`: send them as they are or"
                " percent-encoded; the `/-/` segment ends the name. Errors are"
                ' `{"errors": [{"code", "message", "detail"}]}`. Callers: with token'
                " authentication, an admin account or an admin-scoped robot (Basic"
                " `owner+name`:secret, or `Bearer <robot secret>`), or the configured admin"
                " token; registry pull/push tokens are refused."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "adminAccount": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"adminToken": []}, {"adminAccount": []}, {}],
    }


def _path_parameters(e: Endpoint) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": e.param_schemas.get(name, {"type": "string"}),
        }
        for name in re.findall(r"\{(\w+)\}", e.path)
    ]


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: drop the ``null`` of optional fields."""
    options = prop.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            merged = {k: v for k, v in prop.items() if k != "anyOf"}
            merged.update(kept[0])
            if merged.get("default", 0) is None:
                merged.pop("default")
            return merged
    return prop


def _query_parameters(e: Endpoint) -> list[dict[str, Any]]:
    schema = e.query.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _not_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _responses(e: Endpoint, refs: dict[Any, Any], error_ref: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "Success"}
    if e.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(e.response, "serialization")]}}
    responses[str(e.status)] = ok
    for status in e.other_statuses:
        extra: dict[str, Any] = {"description": "Accepted"}
        if e.response is not None:
            extra["content"] = ok["content"]
        responses[str(status)] = extra
    error = {"content": {"application/json": {"schema": error_ref}}}
    statuses = list(_ERROR_STATUSES)
    if not e.authenticated:
        statuses = [s for s in statuses if s not in _AUTH_STATUSES]
    for status in statuses:
        responses[str(status)] = {"description": _ERROR_STATUSES[status], **error}
    return responses
