"""Accounts under an external token issuer: the admin endpoints answer a clear 409 and
the local commands refuse, nothing written (the issuer decides; local rows would be
ignored). Public repository patterns too: only Lading's own issuer reads them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_support import errors_of
from conftest import GC_ENV, ONE_WORKER, READY_TIMEOUT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.server import RegistryServer, lading_command, start_lading

TOKEN = "external-admin-token-77-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def external_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    root = tmp_path_factory.mktemp("admin-external")
    pem = root / "issuer.pub.pem"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {
        **GC_ENV,
        "LADING_AUTH_MODE": "external",
        "LADING_AUTH_TRUSTED_PUBLIC_KEYS": str(pem),
        "LADING_ADMIN_TOKEN": TOKEN,
    }
    server = start_lading(
        root / "data", env=env, args=ONE_WORKER, ready_timeout=READY_TIMEOUT,
        ready_statuses=(401,),
    )  # fmt: skip
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/accounts/users", None),
        ("POST", "/accounts/users", {"username": "alice", "password": "alice-password-1"}),
        ("DELETE", "/accounts/users/alice", None),
        ("POST", "/accounts/groups", {"name": "team"}),
        ("GET", "/accounts/permissions", None),
        ("POST", "/accounts/robots", {"owner": "alice", "name": "ci", "admin": True}),
        ("GET", "/accounts/public-repositories", None),
        ("POST", "/accounts/public-repositories", {"pattern": "pub/*"}),
        ("DELETE", "/accounts/public-repositories/1", None),
    ],
)
def test_account_endpoints_say_accounts_are_external(
    external_server: RegistryServer, method: str, path: str, body: object
) -> None:
    with httpx.Client(base_url=f"{external_server.url}/admin/v1", timeout=60) as client:
        answer = client.request(method, path, json=body, headers=HEADERS)
        assert answer.status_code == 409, answer.text
        error = errors_of(answer)[0]
        assert error["code"] == "CONFLICT" and "external token issuer" in error["message"]
        # Without the admin token the credential check still comes first.
        assert client.request(method, path, json=body).status_code == 401


def test_rest_of_admin_api_still_works(external_server: RegistryServer) -> None:
    with httpx.Client(base_url=f"{external_server.url}/admin/v1", timeout=60) as client:
        assert client.get("/usage", headers=HEADERS).status_code == 200
        assert client.get("/repositories", headers=HEADERS).status_code == 200
        document = client.get("/openapi.json").json()
        assert "409" in document["paths"]["/admin/v1/accounts/users"]["post"]["responses"]
        public = document["paths"]["/admin/v1/accounts/public-repositories"]
        assert "409" in public["post"]["responses"]


@pytest.mark.parametrize(
    "command",
    [
        ["user", "add", "bob", "--password-stdin"],
        ["user", "ls"],
        ["group", "add", "team"],
        ["perm", "grant", "user", "bob", "team/*", "pull"],
        ["robot", "create", "bob", "ci", "--scope", "team/*:pull"],
        ["public", "add", "pub/*"],
    ],
)
def test_local_account_commands_refuse(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    env["LADING_AUTH_MODE"] = "external"
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [*lading_command(), *command, "--data-dir", str(data_dir)],
        input="bob-password-1\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "managed by the external token issuer" in result.stderr
    assert not data_dir.exists()  # refused before opening any database
