"""Helpers for the token-authentication end-to-end tests.

``Lading`` wraps one running ``lading serve`` in token mode: accounts through the real CLI,
tokens through the real ``/token`` endpoint, small images pushed over plain HTTP, and JWTs
crafted with pyjwt from the server's own signing key (or other keys) for the rejection tests.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from support.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, canonical_json, sha256_digest
from support.server import RegistryServer, lading_command

from auth.keys import libtrust_kid
from auth.robots import create_robot

ADMIN = "root-admin"
ADMIN_PASSWORD = "admin-secret-pw-1"
SERVICE = "lading"
ISSUER = "lading-token-issuer"
API_VERSION = "registry/2.0"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def challenge_params(header: str) -> dict[str, str]:
    """``Bearer realm="…",service="…",…`` → its parameters (values have no quotes or commas
    except inside ``scope``, which is space-separated)."""
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer", header
    params: dict[str, str] = {}
    for part in _split_params(rest):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return params


def _split_params(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


@dataclass(frozen=True)
class SmallImage:
    repository: str
    tag: str
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digest: str
    layer: bytes


class Lading:
    """A token-mode server plus the CLI acting on its database."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url
        self.host_port = server.host_port
        self.realm = f"{server.url}/token"
        self._env = {**os.environ, **server.extra_env}
        self._admin_tokens: dict[tuple[str, ...], tuple[float, str]] = {}
        marker = server.data_dir / "test-database-url"  # LADING_TEST_DATABASE=postgres
        self.database_url = f"sqlite:///{(server.data_dir / 'lading.db').resolve()}"
        if marker.exists():
            self.database_url = marker.read_text().strip()
            self._env["LADING_DATABASE_URL"] = self.database_url

    # -- CLI -----------------------------------------------------------------------------
    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        cmd = [*lading_command(), *args, "--data-dir", str(self.server.data_dir)]
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, env=self._env, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} → {result.returncode}: {result.stderr}")
        return result.stdout

    def cli_status(self, *args: str) -> int:
        """Exit status of ``lading ARGS --data-dir …`` (for commands expected to fail)."""
        cmd = [*lading_command(), *args, "--data-dir", str(self.server.data_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=self._env, timeout=120)
        return result.returncode

    def add_user(self, name: str, password: str, *, admin: bool = False) -> None:
        flags = ["--admin"] if admin else []
        self.cli("user", "add", name, "--password-stdin", *flags, stdin=password + "\n")

    def grant(self, subject_type: str, subject: str, pattern: str, actions: str) -> None:
        self.cli("perm", "grant", subject_type, subject, pattern, actions)

    def robot(self, owner: str, name: str, *scopes: str, expires_days: int | None = None) -> str:
        """Create ``owner+name`` with ``PATTERN:ACTIONS`` scopes; returns its secret."""
        args = ["robot", "create", owner, name, "--output", "json"]
        for scope in scopes:
            args += ["--scope", scope]
        if expires_days is not None:
            args += [f"--expires-days={expires_days}"]
        data = json.loads(self.cli(*args))
        assert data["login"] == f"{owner}+{name}"
        secret: str = data["secret"]
        return secret

    def expired_robot(self, owner: str, name: str, pattern: str, actions: str) -> str:
        """A robot that expired a minute ago, made with the auth API on the server's database
        (the CLI only accepts expiries of at least a day)."""
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                expired = datetime.now(UTC) - timedelta(minutes=1)
                _, secret = create_robot(session, owner, name, [(pattern, actions)], expired)
                session.commit()
        finally:
            engine.dispose()
        return secret

    # -- HTTP ----------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0)

    def token(self, user: str | None, password: str | None, *scopes: str) -> str:
        """A token from ``GET /token`` (Basic auth when ``user`` is given); must succeed."""
        params = [("service", SERVICE), *(("scope", s) for s in scopes)]
        headers = basic(user, password or "") if user is not None else {}
        response = httpx.get(self.realm, params=params, headers=headers, timeout=60.0)
        assert response.status_code == 200, response.text
        value: str = response.json()["token"]
        return value

    def admin_token(self, *scopes: str) -> str:
        """The admin's token for ``scopes``, reused for a minute (argon2 logins are slow)."""
        cached = self._admin_tokens.get(scopes)
        if cached is not None and time.monotonic() - cached[0] < 60:
            return cached[1]
        token = self.token(ADMIN, ADMIN_PASSWORD, *scopes)
        self._admin_tokens[scopes] = (time.monotonic(), token)
        return token

    def push_small_image(self, token: str, repository: str, tag: str, seed: int) -> SmallImage:
        """Push one config, one layer and an OCI manifest with ``token``; asserts success."""
        rng = random.Random(seed)
        layer = rng.randbytes(2048 + seed % 97)
        config = canonical_json({"architecture": "amd64", "os": "linux", "seed": seed,
                                 "rootfs": {"type": "layers", "diff_ids": []}})  # fmt: skip
        with self.client() as client:
            for blob in (config, layer):
                response = client.post(
                    f"/v2/{repository}/blobs/uploads/",
                    params={"digest": sha256_digest(blob)},
                    content=blob,
                    headers={**bearer(token), "Content-Type": "application/octet-stream"},
                )
                assert response.status_code == 201, response.text
            manifest = canonical_json({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config),
                           "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(layer),
                            "size": len(layer)}],
            })  # fmt: skip
            response = client.put(
                f"/v2/{repository}/manifests/{tag}",
                content=manifest,
                headers={**bearer(token), "Content-Type": OCI_MANIFEST},
            )
            assert response.status_code == 201, response.text
        return SmallImage(repository, tag, manifest, sha256_digest(manifest),
                          sha256_digest(config), sha256_digest(layer), layer)  # fmt: skip

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository`` as the admin sees them ([] when it does not exist)."""
        token = self.admin_token(f"repository:{repository}:pull")
        with self.client() as client:
            response = client.get(f"/v2/{repository}/tags/list", headers=bearer(token))
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        tags: list[str] = response.json().get("tags") or []
        return sorted(tags)

    def admin_status(self, method: str, path: str, scope: str) -> int:
        """Status the admin gets for ``method path`` (to check that nothing changed)."""
        with self.client() as client:
            return client.request(method, path, headers=bearer(self.admin_token(scope))).status_code


# -- crafted tokens ------------------------------------------------------------------------


def load_server_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (data_dir / "auth" / "signing-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def claims(sub: str, access: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 300, "nbf": now - 5,
        "iat": now - 5, "jti": f"crafted-{now}-{random.random()}", "access": access,
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: ec.EllipticCurvePrivateKey, kid: str | None = None) -> str:
    kid = kid if kid is not None else libtrust_kid(key.public_key())
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], kid: str) -> str:
    """An ``alg: none`` token carrying a known kid."""
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """HS256 keyed with the server's public key PEM: the classic algorithm confusion."""
    import hashlib
    import hmac

    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": libtrust_kid(key.public_key())}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def repo_access(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}
