"""Operations endpoints, metrics, request ids and JSON logs, on real ``lading serve`` processes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.server import RegistryServer, start_lading
from support.tools import free_port

from registry.http.middleware import incoming_request_id, route_kind


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = client.post(f"/v2/{name}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    patch = client.patch(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(data) - 1}"},
    )
    assert patch.status_code == 202, patch.text
    done = client.put(patch.headers["Location"], params={"digest": digest})
    assert done.status_code == 201, done.text
    return digest


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v2/", "base"),
        ("/v2", "base"),
        ("/v2/_catalog", "catalog"),
        ("/v2/a/b/manifests/latest", "manifest"),
        ("/v2/a/blobs/sha256:00", "blob"),
        ("/v2/a/blobs/uploads/", "upload"),
        ("/v2/a/blobs/uploads/abc", "upload"),
        ("/v2/a/tags/list", "tags"),
        ("/v2/a/referrers/sha256:00", "referrers"),
        # Names may contain the marker words; the last marker decides.
        ("/v2/x/manifests/blobs/manifests/v1", "manifest"),
        ("/v2/blobs/uploads/manifests/v1", "manifest"),
        ("/v2/nothing", "v2_other"),
        ("/healthz", "ops"),
        ("/metrics", "ops"),
        ("/token", "auth"),
        ("/admin/users", "admin"),
        ("/favicon.ico", "other"),
    ],
)
def test_route_kind(path: str, kind: str) -> None:
    assert route_kind(path) == kind


def test_incoming_request_id_is_sanitised() -> None:
    assert incoming_request_id([(b"x-request-id", b"abc-1.2:3_4")]) == "abc-1.2:3_4"
    assert incoming_request_id([(b"x-request-id", b"bad\nvalue")]) is None
    assert incoming_request_id([(b"x-request-id", b"x" * 129)]) is None
    assert incoming_request_id([(b"x-request-id", b"")]) is None
    assert incoming_request_id([]) is None


def test_health_ready_and_request_ids(lading_server: RegistryServer) -> None:
    with lading_server.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
        echoed = client.get("/v2/", headers={"X-Request-ID": "trace-42"})
        assert echoed.headers["X-Request-ID"] == "trace-42"
        generated = client.get("/v2/", headers={"X-Request-ID": "evil\tid"})
        assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
        # Errors carry the id too.
        missing = client.get("/v2/a/manifests/nope", headers={"X-Request-ID": "err-1"})
        assert missing.status_code == 404
        assert missing.headers["X-Request-ID"] == "err-1"


def test_readyz_reports_broken_storage(tmp_path: Path) -> None:
    """Readiness fails (503 JSON) when storage is unusable; liveness does not. The warning
    logged while serving it carries the request's id, like every line of a request."""
    server = start_lading(tmp_path, env={"LADING_WORKERS": "1", "LADING_LOG_FORMAT": "json"})
    try:
        storage = server.data_dir / "storage"
        with server.client() as client:
            assert client.get("/readyz").status_code == 200
            storage.rename(server.data_dir / "storage.moved")
            storage.write_bytes(b"not a directory")
            not_ready = client.get("/readyz", headers={"X-Request-ID": "ready-9"})
            assert not_ready.status_code == 503, not_ready.text
            lines = [json.loads(line) for line in server.log_tail(100_000).splitlines() if line]
            warnings = [e for e in lines if "readiness check storage" in str(e["message"])]
            assert [e["request_id"] for e in warnings] == ["ready-9"], lines[-5:]
            body = not_ready.json()
            assert body == {
                "status": "unavailable",
                "checks": {"database": "ok", "storage": "error: StorageUnavailable"},
            }
            assert client.get("/healthz").status_code == 200
            storage.unlink()
            (server.data_dir / "storage.moved").rename(storage)
            assert client.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody listens on: /readyz answers 503 naming the database.

    `lading serve` refuses to start without its database (it checks the schema
    first), so the app runs in this process, on a real uvicorn server in a thread.
    """
    import threading

    import uvicorn

    from registry.app import create_app
    from registry.settings import load_settings

    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "database_url": f"postgresql+psycopg://lading:x@127.0.0.1:{free_port()}/lading",
        },
        environ={},
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, prepared=True), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="readyz-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["database"].startswith("error: ")
            assert response.json()["checks"]["storage"] == "ok"
            assert client.get("/healthz").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not stop"


def test_metrics_by_route_kind_across_workers(tmp_path: Path) -> None:
    """Two workers: /metrics sums both (multiprocess mode) and labels by kind, not path."""
    server = start_lading(tmp_path, env={"LADING_WORKERS": "2"})
    try:
        data = b"metrics-blob-" * 1000
        with server.client() as client:
            for _ in range(4):
                _push_blob(client, "team/app", data)
            for _ in range(10):
                assert client.get("/v2/team/app/manifests/missing").status_code == 404
            # Fresh connections spread over both workers.
            for _ in range(10):
                with server.client() as fresh:
                    assert fresh.get("/v2/team/app/blobs/" + _digest(data)).content == data
            # A request is counted once its response is sent, so the last GET's worker may
            # record it just after the client has read the body: wait for it briefly.
            deadline = time.monotonic() + 10
            text = client.get("/metrics").text
            while time.monotonic() < deadline and (
                _metric(text, "lading_http_requests_total", kind="blob", status="200") < 10
            ):
                time.sleep(0.1)
                text = client.get("/metrics").text
        assert _metric(text, "lading_http_requests_total", kind="manifest", status="404") == 10
        assert _metric(text, "lading_http_requests_total", kind="blob", status="200") == 10
        assert _metric(text, "lading_http_requests_total", kind="upload", method="PATCH") == 4
        assert _metric(text, "lading_http_request_bytes_total", kind="upload") == 4 * len(data)
        assert _metric(text, "lading_http_response_bytes_total", kind="blob") == 10 * len(data)
        count = _metric(text, "lading_http_request_duration_seconds_count", kind="manifest")
        assert count == 10
        assert "lading_upload_requests_in_progress 0.0" in text
        assert "team/app" not in text  # never the raw path
        assert _metric(text, "lading_gc_runs_total", outcome="ok") == 0
        # Workers start with glibc's heap arenas capped (lading serve sets it for them).
        workers = psutil.Process(server.pid).children(recursive=True)
        arenas = {w.environ().get("MALLOC_ARENA_MAX") for w in workers if "python" in w.name()}
        assert arenas == {os.environ.get("MALLOC_ARENA_MAX", "2")}
    finally:
        server.stop()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_json_logs_carry_the_request_id(tmp_path: Path) -> None:
    server = start_lading(
        tmp_path,
        env={"LADING_WORKERS": "1", "LADING_LOG_FORMAT": "json", "LADING_ACCESS_LOG": "true"},
    )
    try:
        with server.client() as client:
            client.get("/v2/some/repo/manifests/v1", headers={"X-Request-ID": "json-77"})
        deadline = time.monotonic() + 5
        entries: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            lines = [line for line in server.log_tail(100_000).splitlines() if line.strip()]
            entries = [json.loads(line) for line in lines]  # every line is one JSON object
            if any(entry.get("request_id") == "json-77" for entry in entries):
                break
            time.sleep(0.1)
        access = [e for e in entries if e.get("request_id") == "json-77"]
        assert access, entries[-5:]
        line = access[-1]
        assert line["logger"] == "lading.access"
        assert line["kind"] == "manifest"
        assert line["status"] == 404
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float)
    finally:
        server.stop()
