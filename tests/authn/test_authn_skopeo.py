"""skopeo with ``--creds`` against token auth: copy an OCI index in and out, inspect, and
refusals with wrong or missing credentials."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from authn_support import Lading
from support.oci import layout_tagged, verify_layout_blobs, write_index_layout
from support.tools import require_tool

USER, PASSWORD = "sk-user", "skopeo-user-pw-1"
TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


class Skopeo:
    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("skopeo", "skopeo")
        self.policy = workdir / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.authfile = workdir / "empty-auth.json"  # no stored credentials leak in
        self.authfile.write_text('{"auths": {}}')

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--policy", str(self.policy), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)

    def copy(self, src: str, dest: str, *creds: str) -> subprocess.CompletedProcess[str]:
        auth = ("--src-authfile", str(self.authfile), "--dest-authfile", str(self.authfile))
        return self.run("copy", "--all", *TLS, *auth, *creds, src, dest)

    def inspect(self, ref: str, *creds: str) -> subprocess.CompletedProcess[str]:
        return self.run("inspect", "--raw", "--tls-verify=false", "--authfile",
                        str(self.authfile), *creds, ref)  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}: {result.stderr[-3000:]}"


def refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, f"{result.args} succeeded"
    text = result.stderr.lower()
    assert any(w in text for w in ("unauthorized", "denied", "authentication required")), text


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory, authn: Lading) -> Skopeo:
    tool = Skopeo(tmp_path_factory.mktemp("skopeo-authn"))
    authn.add_user(USER, PASSWORD)
    authn.grant("user", USER, "sk/*", "pull,push")
    return tool


def test_skopeo_copy_in_inspect_and_out(skopeo: Skopeo, authn: Lading, tmp_path: Path) -> None:
    layout = write_index_layout(tmp_path / "in", tag="multi", seed=31)
    ref = f"docker://{authn.host_port}/sk/app:multi"
    creds = f"{USER}:{PASSWORD}"
    ok(skopeo.copy(f"oci:{layout.root}:multi", ref, "--dest-creds", creds))
    raw = skopeo.inspect(ref, "--creds", creds)
    ok(raw)
    assert raw.stdout.encode() == layout.index_bytes
    out = tmp_path / "out"
    ok(skopeo.copy(ref, f"oci:{out}:multi", "--src-creds", creds))
    assert layout_tagged(out, "multi")["digest"] == layout.index_digest
    assert verify_layout_blobs(out) >= layout.blob_digests
    assert authn.tags("sk/app") == ["multi"]


def test_skopeo_refused_with_wrong_or_no_credentials(
    skopeo: Skopeo, authn: Lading, tmp_path: Path
) -> None:
    layout = write_index_layout(tmp_path / "in", tag="multi", seed=32)
    good = f"{USER}:{PASSWORD}"
    ok(skopeo.copy(f"oci:{layout.root}:multi", f"docker://{authn.host_port}/sk/priv:v1",
                   "--dest-creds", good))  # fmt: skip
    ref = f"docker://{authn.host_port}/sk/priv:v1"
    bad = f"{USER}:wrong-password"
    refused(skopeo.inspect(ref, "--creds", bad))
    refused(skopeo.inspect(ref, "--no-creds"))
    refused(skopeo.copy(ref, f"oci:{tmp_path / 'out'}:v1", "--src-creds", bad))
    refused(skopeo.copy(f"oci:{layout.root}:multi", f"docker://{authn.host_port}/sk/priv:bad",
                        "--dest-creds", bad))  # fmt: skip
    assert authn.tags("sk/priv") == ["v1"]
