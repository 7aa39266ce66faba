"""README's quick start: ``scripts/serve`` runs the registry on the embedded defaults
(filesystem storage and SQLite under the data directory, no external service)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from support.blob_push import push_blob
from support.oci import OCI_CONFIG, OCI_MANIFEST, sha256_digest
from support.server import RegistryServer, wait_ready
from support.tools import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_serve_script_runs_on_the_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    # No LADING_* setting from the test run may leak in: the defaults are under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO_ROOT / "scripts" / "serve"), "--port", str(port), "--data-dir", str(data)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    server = RegistryServer("lading", port, data, log, process)
    try:
        wait_ready(server, 180)  # a first run may create .venv and install Lading
        repo = "quick/start"
        with server.client() as client:
            config = b'{"architecture": "amd64", "os": "linux"}'
            layer = os.urandom(64 * 1024)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": push_blob(client, repo, config),
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": push_blob(client, repo, layer),
                            "size": len(layer),
                        }
                    ],
                }
            ).encode()
            put = client.put(
                f"/v2/{repo}/manifests/v1",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert put.status_code == 201, put.text
            got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
            assert got.status_code == 200 and got.content == manifest
            blob = client.get(f"/v2/{repo}/blobs/{sha256_digest(layer)}")
            assert blob.status_code == 200 and blob.content == layer
    finally:
        server.stop()
    # A clean stop on SIGTERM (uvicorn re-raises the signal once shut down).
    assert process.returncode in (0, -signal.SIGTERM), server.log_tail()
    assert "Application shutdown complete" in server.log_tail()
    assert (data / "lading.db").is_file()
    stored = [p for p in (data / "storage").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in stored) >= len(layer)
