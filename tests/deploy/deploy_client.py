"""A small registry API client for the deployment tests (token auth aware), and helpers
for the docker CLI and for a replica's own logs and metrics.

Every call may go to a different replica: ``alternating_upload`` sends each request of one
chunked upload to the next client in turn.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from support.dockerd import DockerEngine

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


class RegistryClient:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        tokens: dict[str, str] | None = None,
        own_realm: bool = False,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        # ``verify``: a context trusting the test CA, for https through the test proxy.
        self.verify = verify
        self.http = httpx.Client(base_url=self.url, timeout=120.0, verify=verify)
        self.credentials = (username, password)
        # Share ``tokens`` between clients to use one replica's tokens on another.
        self._tokens: dict[str, str] = {} if tokens is None else tokens
        # Fetch tokens from this client's own server instead of the advertised realm.
        self.own_realm = own_realm

    def auth_enabled(self) -> bool:
        return self.http.get("/v2/").status_code == 401

    def _token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        query = {"service": params.get("service", ""), "scope": scope}
        realm = params["realm"]
        if self.own_realm:
            realm = self.url + urlsplit(realm).path
        response = httpx.get(
            realm, params=query, auth=self.credentials, timeout=60, verify=self.verify
        )
        response.raise_for_status()
        body = response.json()
        return str(body.get("token") or body["access_token"])

    def request(self, method: str, path: str, scope: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401 and "Bearer" in response.headers.get("WWW-Authenticate", ""):
            self._tokens[scope] = self._token(response.headers["WWW-Authenticate"], scope)
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            response = self.http.request(method, path, headers=headers, **kwargs)
        return response

    def bearer(self, scope: str) -> str:
        """The token this client holds for ``scope`` (after a request with that scope)."""
        return self._tokens[scope]

    def tags(self, name: str) -> list[str]:
        response = self.request("GET", f"/v2/{name}/tags/list", f"repository:{name}:pull")
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def delete_tag(self, name: str, tag: str) -> None:
        response = self.request(
            "DELETE", f"/v2/{name}/manifests/{tag}", f"repository:{name}:delete"
        )
        assert response.status_code == 202, response.text

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256_digest(data)
        scope = f"repository:{name}:pull,push"
        start = self.request("POST", f"/v2/{name}/blobs/uploads/", scope)
        assert start.status_code == 202, start.text
        done = self.request(
            "PUT",
            start.headers["Location"],
            scope,
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return digest

    def get_blob(self, name: str, digest: str) -> bytes:
        response = self.request("GET", f"/v2/{name}/blobs/{digest}", f"repository:{name}:pull")
        assert response.status_code == 200, response.text
        return response.content

    def put_manifest(self, name: str, tag: str, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest).encode()
        response = self.request(
            "PUT",
            f"/v2/{name}/manifests/{tag}",
            f"repository:{name}:pull,push",
            content=body,
            headers={"Content-Type": MANIFEST_TYPE},
        )
        assert response.status_code == 201, response.text

    def get_manifest(self, name: str, tag: str) -> dict[str, Any]:
        response = self.request(
            "GET",
            f"/v2/{name}/manifests/{tag}",
            f"repository:{name}:pull",
            headers={"Accept": MANIFEST_TYPE},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def patch_chunk(self, location: str, scope: str, chunk: bytes, offset: int) -> httpx.Response:
        """PATCH ``chunk`` at ``offset`` of an upload; asserts the 202 and the new range."""
        response = self.request(
            "PATCH",
            location,
            scope,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{offset + len(chunk) - 1}"
        return response

    @staticmethod
    def alternating_upload(
        clients: list[RegistryClient], name: str, chunks: list[bytes], digest: str
    ) -> list[str]:
        """POST, each PATCH and the final PUT each go to the next replica; returns their URLs."""
        scope = f"repository:{name}:pull,push"
        served: list[str] = []
        turn = 0

        def next_client() -> RegistryClient:
            nonlocal turn
            client = clients[turn % len(clients)]
            turn += 1
            served.append(client.url)
            return client

        start = next_client().request("POST", f"/v2/{name}/blobs/uploads/", scope)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        offset = 0
        for chunk in chunks:
            client = next_client()
            status = client.request("GET", location, scope)
            assert status.status_code == 204, status.text
            expected = f"0-{offset - 1}" if offset else "0-0"
            assert offset == 0 or status.headers["Range"] == expected
            patch = client.patch_chunk(location, scope, chunk, offset)
            offset += len(chunk)
            location = patch.headers["Location"]
        done = next_client().request("PUT", location, scope, params={"digest": digest})
        assert done.status_code == 201, done.text
        return served


def image_manifest(config: bytes, layer: bytes) -> dict[str, Any]:
    """An OCI image manifest of one ``config`` blob and one uncompressed ``layer``."""
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256_digest(layer),
                "size": len(layer),
            }
        ],
    }


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the docker CLI and the replicas' own endpoints ----------------------------------------


def docker_login(
    engine: DockerEngine, host: str, username: str, password: str
) -> subprocess.CompletedProcess[str]:
    """``docker login`` with the password on stdin; the caller checks the outcome."""
    return subprocess.run(
        ["docker", "login", "-u", username, "--password-stdin", host],
        input=password,
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def image_with_payload(engine: DockerEngine, tmp: Path, ref: str, size: int) -> bytes:
    """Build ``ref``: FROM scratch plus one file of ``size`` random bytes at /payload."""
    payload = secrets.token_bytes(size)
    ctx = tmp / f"image-{secrets.token_hex(4)}"
    ctx.mkdir()
    (ctx / "payload").write_bytes(payload)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    engine.run("build", "-q", "-t", ref, str(ctx))
    return payload


def payload_of(engine: DockerEngine, ref: str, tmp: Path) -> bytes:
    container = engine.out("create", ref, "/payload")
    try:
        target = tmp / f"payload-{secrets.token_hex(4)}"
        engine.run("cp", f"{container}:/payload", str(target))
        return target.read_bytes()
    finally:
        engine.run("rm", container, check=False)


def metric(url: str, name: str, labels: str = "") -> float:
    """The value of one sample on ``url``/metrics (0 when absent), e.g. a replica's own."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    wanted = f"{name}{{{labels}}}" if labels else name
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            total += float(value)
    return total


def access_log(engine: DockerEngine, container: str) -> list[dict[str, Any]]:
    """The ``lading.access`` JSON lines a container has logged so far."""
    result = engine.run("logs", container, timeout=120)
    entries = []
    for line in (result.stdout + result.stderr).splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("logger") == "lading.access":
            entries.append(entry)
    return entries
