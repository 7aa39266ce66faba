"""A token-auth ``lading serve`` for the account tests, and small helpers around it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from conftest import GC_ENV, ONE_WORKER, READY_TIMEOUT
from support.server import RegistryServer, start_lading

ADMIN, ADMIN_PW = "boss", "boss-password-1"
STATIC = "static-admin-token-77-0123456789abcdef0123"
BOSS = (ADMIN, ADMIN_PW)


def start_token_server(tmp_path_factory: pytest.TempPathFactory) -> RegistryServer:
    env = {
        **GC_ENV,
        "LADING_AUTH_MODE": "token",
        "LADING_AUTH_ADMIN_USERNAME": ADMIN,
        "LADING_AUTH_ADMIN_PASSWORD": ADMIN_PW,
        "LADING_ADMIN_TOKEN": STATIC,
    }
    return start_lading(
        tmp_path_factory.mktemp("admin-accounts"),
        env=env,
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
        ready_statuses=(401,),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (the signature is the registry's business, not this test's)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def registry_token(
    client: httpx.Client, auth: tuple[str, str] | None, *scopes: str
) -> httpx.Response:
    params = [("service", "lading"), *(("scope", s) for s in scopes)]
    return client.get("/token", params=params, auth=auth)


def granted(client: httpx.Client, auth: tuple[str, str] | None, scope: str) -> set[str]:
    """Actions a fresh registry token for ``auth`` carries on the scope's repository."""
    response = registry_token(client, auth, scope)
    assert response.status_code == 200, response.text
    access = claims(response.json()["token"])["access"]
    return {action for entry in access for action in entry["actions"]}


def audit_actions(client: httpx.Client, action: str) -> list[dict[str, Any]]:
    response = client.get("/admin/v1/audit", params={"action": action, "limit": 200}, auth=BOSS)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
