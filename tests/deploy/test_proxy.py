"""The compose stack's TLS reverse proxy (profile ``tls``), alone and in front of replicas.

nginx is upstream's 1.26.3 compiled like the official image's, on the debootstrapped base
(``nginx/Dockerfile``, handed to compose through ``LADING_NGINX_IMAGE``), running the
shipped ``deploy/nginx/lading.conf`` unchanged, HTTP/2 included. Its certificate comes from
a throwaway CA that the test's dockerd trusts through
``/etc/docker/certs.d/<host:port>/ca.crt``. Clients use the host's address on the Docker
bridge, not 127.0.0.1, for which Docker would not verify TLS at all.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import deploy_stack as stack
import deploy_tls
import httpx
import pytest
from deploy_client import (
    RegistryClient,
    access_log,
    docker_login,
    image_manifest,
    image_with_payload,
    metric,
    payload_of,
    sha256_digest,
)
from support.dockerd import DockerEngine
from support.tools import free_port, require_tool, unavailable

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

MIB = 1024 * 1024
IN_PROGRESS = "lading_upload_requests_in_progress"


@dataclass
class Proxy:
    host: str  # host:port, as Docker and the clients name the registry
    ca: Path
    context: ssl.SSLContext
    variables: dict[str, str]  # compose variables that enable the tls profile

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def env_lines(self) -> str:
        # Lading sees plain HTTP from nginx: the realm is configured, not derived.
        return f"LADING_AUTH_REALM={self.url}/token\nFORWARDED_ALLOW_IPS=*\n"

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/v2/", verify=self.context).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url} did not answer within {timeout}s")
            time.sleep(1)


@pytest.fixture(scope="module")
def proxy(engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    image = stack.ensure_nginx_image(engine)
    address = stack.bridge_gateway(engine)
    port = free_port()
    tls_dir = tmp_path_factory.mktemp("tls")
    ca = deploy_tls.issue_certificates(tls_dir, address)
    return Proxy(
        host=f"{address}:{port}",
        ca=ca,
        context=ssl.create_default_context(cafile=str(ca)),
        variables={
            "LADING_NGINX_IMAGE": image,
            "LADING_TLS_DIR": str(tls_dir),
            "LADING_HTTPS_PORT": str(port),
        },
    )


def _client(compose: stack.Compose, proxy: Proxy) -> RegistryClient:
    return RegistryClient(
        proxy.url, stack.ADMIN, compose.env["ADMIN_PASSWORD"], verify=proxy.context
    )


def test_tls_proxy(
    compose: stack.Compose, engine: DockerEngine, proxy: Proxy, tmp_path: Path
) -> None:
    """Headers, a streamed 48 MiB upload and docker push/pull, all through https."""
    with compose.variant(proxy.env_lines(), proxy.variables, tmp_path):
        ids = compose.up(profiles=("tls",))
        proxy.wait()
        replica = f"http://{compose.address(ids[0])}:5000"

        base = httpx.get(f"{proxy.url}/v2/", verify=proxy.context)
        assert base.status_code == 401
        assert base.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert base.headers["WWW-Authenticate"].startswith(f'Bearer realm="{proxy.url}/token"')
        assert base.headers["Strict-Transport-Security"] == "max-age=31536000"

        client = _client(compose, proxy)
        name = "tls/blob"
        scope = f"repository:{name}:pull,push"
        start = client.request("POST", f"/v2/{name}/blobs/uploads/", scope)  # fetches a token
        assert start.status_code == 202, start.text
        location = httpx.URL(proxy.url).join(start.headers["Location"])
        assert (location.scheme, location.netloc.decode()) == ("https", proxy.host)

        # The body reaches Lading while the client is still sending it: nginx neither caps
        # it (client_max_body_size 0) nor buffers it (proxy_request_buffering off).
        size = 48 * MIB
        data = secrets.token_bytes(size)
        release = threading.Event()

        def body() -> Iterator[bytes]:
            for offset in range(0, size, MIB):
                if offset == 8 * MIB and not release.wait(120):
                    return
                yield data[offset : offset + MIB]

        result: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: result.append(
                client.request(
                    "PATCH",
                    str(location),
                    scope,
                    content=body(),
                    headers={"Content-Type": "application/octet-stream"},
                )
            )
        )
        sender.start()
        streamed = _wait_for(lambda: metric(replica, IN_PROGRESS) >= 1, timeout=60)
        release.set()
        sender.join(300)
        assert streamed, "Lading saw no upload in progress while the client held back the body"
        patch = result[0]
        assert patch.status_code == 202, patch.text
        assert patch.headers["Range"] == f"0-{size - 1}"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        done = client.request("PUT", patch.headers["Location"], scope, params={"digest": digest})
        assert done.status_code == 201, done.text
        assert client.get_blob(name, digest) == data

        # Lading trusted nginx's X-Forwarded-For: its access log names the caller nginx
        # saw, not the proxy container.
        request_id = patch.headers["X-Request-ID"]
        entries = [e for e in access_log(engine, ids[0]) if e["request_id"] == request_id]
        assert len(entries) == 1, entries
        proxy_ip = compose.address(compose.container_ids("proxy")[0])
        assert entries[0]["client"] not in (None, proxy_ip), entries[0]

        _http2_upload(client, proxy, replica, tmp_path)
        _docker_push_pull_over_tls(compose, engine, proxy, tmp_path)


def _curl_with_http2() -> str:
    curl = require_tool("curl", "curl")
    features = subprocess.run([curl, "-V"], capture_output=True, text=True, check=True).stdout
    if "HTTP2" not in features:
        unavailable("this curl cannot speak HTTP/2 (built without libnghttp2)")
    return curl


def _curl_http2(
    curl: str, proxy: Proxy, work: Path, url: str, *args: str
) -> tuple[list[str], dict[str, str]]:
    """curl ``url`` offering HTTP/2: ([HTTP version, status], lower-cased response headers)."""
    head = work / f"headers-{secrets.token_hex(4)}"
    result = subprocess.run(
        [
            *(curl, "--http2", "-sS", "--fail-with-body", "--cacert", str(proxy.ca)),
            *("-D", str(head), "-w", "%{http_version} %{response_code}", *args, url),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"curl exited with {result.returncode}: {result.stderr}"
    headers = {}
    for line in head.read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if value:
            headers[key.strip().lower()] = value.strip()
    return result.stdout.split(), headers


def _http2_upload(client: RegistryClient, proxy: Proxy, replica: str, tmp_path: Path) -> None:
    """The shipped config speaks HTTP/2 (``http2 on``): an upload, streamed through nginx to
    Lading while curl still sends it, and the blob read back, both over HTTP/2."""
    curl = _curl_with_http2()
    name = "tls/h2"
    scope = f"repository:{name}:pull,push"
    start = client.request("POST", f"/v2/{name}/blobs/uploads/", scope)
    assert start.status_code == 202, start.text
    location = str(httpx.URL(proxy.url).join(start.headers["Location"]))
    auth = f"Authorization: Bearer {client.bearer(scope)}"
    data = secrets.token_bytes(16 * MIB)
    body = tmp_path / "h2-body"
    body.write_bytes(data)
    patch_args = ("-X", "PATCH", "-T", str(body), "--limit-rate", "4M", "-o", "/dev/null")
    # 16 MiB at 4 MiB/s: Lading must see the upload in progress while curl is still sending.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(
            _curl_http2,
            *(curl, proxy, tmp_path, location, *patch_args),
            *("-H", auth, "-H", "Content-Type: application/octet-stream"),
        )
        streamed = _wait_for(lambda: metric(replica, IN_PROGRESS) >= 1, timeout=30)
        (version, status), headers = sending.result(timeout=300)
    assert (version, status) == ("2", "202")
    assert streamed, "Lading saw no upload in progress while curl was sending over HTTP/2"
    assert headers["range"] == f"0-{len(data) - 1}"
    digest = sha256_digest(data)
    done = client.request("PUT", headers["location"], scope, params={"digest": digest})
    assert done.status_code == 201, done.text
    copy = tmp_path / "h2-copy"
    url = f"{proxy.url}/v2/{name}/blobs/{digest}"
    got, _ = _curl_http2(curl, proxy, tmp_path, url, "-H", auth, "-o", str(copy))
    assert got == ["2", "200"]
    assert copy.read_bytes() == data


def _docker_push_pull_over_tls(
    compose: stack.Compose, engine: DockerEngine, proxy: Proxy, tmp_path: Path
) -> None:
    password = compose.env["ADMIN_PASSWORD"]
    untrusted = docker_login(engine, proxy.host, stack.ADMIN, password)
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr, untrusted.stderr
    with deploy_tls.docker_trusts(proxy.host, proxy.ca):
        login = docker_login(engine, proxy.host, stack.ADMIN, password)
        assert login.returncode == 0, login.stderr
        ref = f"{proxy.host}/tls/app:v1"
        payload = image_with_payload(engine, tmp_path, ref, 12 * MIB)
        try:
            engine.run("push", ref, timeout=600)
            engine.run("image", "rm", ref)
            engine.run("pull", ref, timeout=600)
            assert payload_of(engine, ref, tmp_path) == payload
        finally:
            engine.run("image", "rm", "-f", ref, check=False)


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


GC_INTERVAL = 2.0
GC_DELAY = 5.0


def test_replicas_behind_the_proxy(
    compose: stack.Compose, engine: DockerEngine, proxy: Proxy, tmp_path: Path
) -> None:
    """Two replicas behind nginx's round robin, sharing PostgreSQL and the ``s3`` profile's
    store, GC running on both: one upload's PATCHes land on both, pulls see every byte, GC
    keeps what is referenced or in flight and frees what is not."""
    s3_lines = (
        "LADING_STORAGE=s3\nLADING_S3_ENDPOINT_URL=http://s3:9000\nLADING_S3_BUCKET=lading\n"
        f"LADING_S3_ACCESS_KEY=lading\nLADING_S3_SECRET_KEY={secrets.token_urlsafe(16)}\n"
        f"LADING_GC_INTERVAL_SECONDS={GC_INTERVAL}\nLADING_GC_REVIEW_DELAY={GC_DELAY}\n"
    )
    variables = {
        **proxy.variables,
        "LADING_HTTP_PORT": "",  # ephemeral host ports: replicas must not collide
        "LADING_S3_IMAGE": f"{compose.project}/s3:test",
    }
    with compose.variant(proxy.env_lines() + s3_lines, variables, tmp_path):
        compose("--profile", "s3", "build", "s3", timeout=900)
        ids = compose.up("--scale", "lading=2", replicas=2, profiles=("s3", "tls"))
        proxy.wait()
        client = _client(compose, proxy)
        name = "scale/app"

        layer = secrets.token_bytes(3 * MIB + 123)
        layer_digest, steps = _chunked_upload(client, name, layer, chunk=512 * 1024)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        client.push_blob(name, config)
        client.put_manifest(name, "v1", image_manifest(config, layer))
        pulls = []
        for _ in range(4):
            response = client.request(
                "GET", f"/v2/{name}/blobs/{layer_digest}", f"repository:{name}:pull"
            )
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == layer_digest[7:]
            pulls.append(response.headers["X-Request-ID"])

        # An upload in flight while several GC passes run on both replicas.
        pending = secrets.token_bytes(MIB + 5)
        scope = f"repository:{name}:pull,push"
        start = client.request("POST", f"/v2/{name}/blobs/uploads/", scope)
        first = client.patch_chunk(start.headers["Location"], scope, pending[:MIB], 0)
        time.sleep(GC_DELAY + 3 * GC_INTERVAL)
        second = client.patch_chunk(first.headers["Location"], scope, pending[MIB:], MIB)
        pending_digest = "sha256:" + hashlib.sha256(pending).hexdigest()
        done = client.request(
            "PUT", second.headers["Location"], scope, params={"digest": pending_digest}
        )
        assert done.status_code == 201, done.text
        assert client.get_blob(name, pending_digest) == pending
        # Referenced content outlived the same passes.
        assert client.get_manifest(name, "v1")["layers"][0]["digest"] == layer_digest
        assert client.get_blob(name, layer_digest) == layer

        served = _served_by(engine, ids)
        patches = [served[rid] for method, rid in steps if method == "PATCH"]
        stack.log(f"upload requests served by: {[(m, served[r][:6]) for m, r in steps]}")
        assert set(patches) == set(ids), "the PATCHes of one upload did not reach both replicas"
        assert any(a != b for a, b in itertools.pairwise(patches))
        assert {served[rid] for rid in pulls} == set(ids)

        # Untagged, the image's manifest and then its blobs age out; either replica's GC
        # may free them, in the database and in the bucket.
        sizes_before = _bucket_sizes(compose)
        assert len(layer) in sizes_before and len(pending) in sizes_before
        client.delete_tag(name, "v1")

        def collected() -> bool:
            gone = client.request(
                "GET", f"/v2/{name}/blobs/{layer_digest}", f"repository:{name}:pull"
            )
            return gone.status_code == 404

        assert _wait_for(collected, timeout=120), "GC never freed the untagged image's layer"
        replicas = [f"http://{compose.address(cid)}:5000" for cid in ids]

        def freed_everywhere() -> bool:
            sizes = _bucket_sizes(compose)
            blobs = sum(metric(url, "lading_gc_blobs_deleted_total") for url in replicas)
            freed = sum(metric(url, "lading_gc_bytes_freed_total") for url in replicas)
            gone = len(layer) not in sizes and len(pending) not in sizes
            return gone and blobs >= 3 and freed >= len(layer) + len(pending) + len(config)

        assert _wait_for(freed_everywhere, timeout=60), _bucket_sizes(compose)
        for url in replicas:
            assert metric(url, "lading_gc_runs_total", 'outcome="ok"') > 0, url
            assert metric(url, "lading_gc_runs_total", 'outcome="failed"') == 0, url


def _chunked_upload(
    client: RegistryClient, name: str, data: bytes, chunk: int
) -> tuple[str, list[tuple[str, str]]]:
    """POST, one PATCH per ``chunk`` bytes, PUT: the digest and (method, request id) of each.

    Nothing else goes through the proxy meanwhile, so its round robin alternates them.
    """
    scope = f"repository:{name}:pull,push"
    start = client.request("POST", f"/v2/{name}/blobs/uploads/", scope)
    assert start.status_code == 202, start.text
    steps = [("POST", start.headers["X-Request-ID"])]
    location = start.headers["Location"]
    for offset in range(0, len(data), chunk):
        patch = client.patch_chunk(location, scope, data[offset : offset + chunk], offset)
        steps.append(("PATCH", patch.headers["X-Request-ID"]))
        location = patch.headers["Location"]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = client.request("PUT", location, scope, params={"digest": digest})
    assert done.status_code == 201, done.text
    steps.append(("PUT", done.headers["X-Request-ID"]))
    return digest, steps


def _served_by(engine: DockerEngine, ids: list[str]) -> dict[str, str]:
    """Request id (nginx's, echoed by Lading) -> the replica whose access log has it."""
    served: dict[str, str] = {}
    for cid in ids:
        for entry in access_log(engine, cid):
            served[entry["request_id"]] = cid
    return served


def _bucket_sizes(compose: stack.Compose) -> list[int]:
    """Sizes of the files under the bucket in the S3 store's volume (one per object)."""
    s3 = compose.container_ids("s3")[0]
    listing = compose.engine.out(
        "exec", s3, "find", "/data/lading", "-type", "f", "-printf", "%s\n"
    )
    return [int(line) for line in listing.split()]
