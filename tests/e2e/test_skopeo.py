"""skopeo against the registry: a two-platform OCI index in, out again, byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.oci import (
    OCI_INDEX,
    IndexLayout,
    layout_blob,
    layout_tagged,
    sha256_digest,
    verify_layout_blobs,
    write_index_layout,
)
from support.server import RegistryServer
from support.tools import require_tool

POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class Skopeo:
    """Runs skopeo with a private policy and auth file, over plain HTTP to 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("skopeo", "skopeo")
        self.policy = workdir / "policy.json"
        self.policy.write_text(json.dumps(POLICY))
        self.authfile = workdir / "auth.json"
        self.authfile.write_text('{"auths": {}}')

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--policy", str(self.policy), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited with {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def copy_all(self, source: str, dest: str) -> None:
        self.run(
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-authfile",
            str(self.authfile),
            "--dest-authfile",
            str(self.authfile),
            source,
            dest,
        )

    def raw(self, ref: str) -> bytes:
        """``skopeo inspect --raw`` output: the manifest bytes exactly as served."""
        cmd = [self.binary, "--policy", str(self.policy), "inspect", "--raw"]
        cmd += ["--tls-verify=false", "--authfile", str(self.authfile), ref]
        result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout

    def inspect(self, ref: str, *extra: str) -> dict[str, Any]:
        out = self.run(
            "inspect", "--tls-verify=false", "--authfile", str(self.authfile), *extra, ref
        ).stdout
        data: dict[str, Any] = json.loads(out)
        return data


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> IndexLayout:
    return write_index_layout(tmp_path_factory.mktemp("oci-src") / "layout", "multi", seed=5)


def _docker_ref(server: RegistryServer, repo: str, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{server.host_port}/{repo}{sep}{ref}"


def test_index_roundtrip_preserves_every_digest(
    skopeo: Skopeo, layout: IndexLayout, session_registry: RegistryServer, tmp_path: Path
) -> None:
    server = session_registry
    skopeo.copy_all(f"oci:{layout.root}:multi", _docker_ref(server, "e2e/multi", "1"))

    served = skopeo.raw(_docker_ref(server, "e2e/multi", "1"))
    assert served == layout.index_bytes
    assert sha256_digest(served) == layout.index_digest
    for image in layout.images:
        child = skopeo.raw(_docker_ref(server, "e2e/multi", image.manifest_digest))
        assert sha256_digest(child) == image.manifest_digest
    with server.client() as client:
        response = client.get(
            "/v2/e2e/multi/manifests/1", headers={"Accept": f"{OCI_INDEX}, */*;q=0.1"}
        )
        assert response.status_code == 200
        assert response.headers["Docker-Content-Digest"] == layout.index_digest
        assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX

    # Back out into a fresh OCI layout: same index, same children, same blobs.
    out = tmp_path / "oci-out"
    skopeo.copy_all(_docker_ref(server, "e2e/multi", "1"), f"oci:{out}:copied")
    tagged = layout_tagged(out, "copied")
    assert tagged["digest"] == layout.index_digest
    assert tagged["mediaType"] == OCI_INDEX
    assert layout_blob(out, layout.index_digest) == layout.index_bytes
    present = verify_layout_blobs(out)
    wanted = {layout.index_digest, *layout.manifest_digests, *layout.blob_digests}
    assert wanted <= present
    for digest in wanted:
        assert layout_blob(out, digest) == layout_blob(layout.root, digest)

    # And into a dir: directory (manifest.json is the index, children by digest).
    target = tmp_path / "dir-out"
    skopeo.copy_all(_docker_ref(server, "e2e/multi", "1"), f"dir:{target}")
    assert (target / "manifest.json").read_bytes() == layout.index_bytes
    for image in layout.images:
        name = image.manifest_digest.removeprefix("sha256:") + ".manifest.json"
        assert sha256_digest((target / name).read_bytes()) == image.manifest_digest
    for digest in layout.blob_digests:
        data = (target / digest.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


def test_inspect_and_list_tags(
    skopeo: Skopeo, layout: IndexLayout, session_registry: RegistryServer
) -> None:
    server = session_registry
    for tag in ("2.0", "1.0", "latest"):
        skopeo.copy_all(f"oci:{layout.root}:multi", _docker_ref(server, "e2e/tags", tag))

    for image in layout.images:
        info = skopeo.inspect(
            _docker_ref(server, "e2e/tags", "1.0"),
            "--override-os",
            image.os,
            "--override-arch",
            image.architecture,
        )
        assert info["Digest"] == layout.index_digest
        assert info["Architecture"] == image.architecture
        assert info["Os"] == image.os
        assert info["Layers"] == list(image.layer_digests)
        assert info["Labels"] == {"lading.test.seed": "5"}
        assert sorted(info["RepoTags"]) == ["1.0", "2.0", "latest"]

    listed = json.loads(
        skopeo.run(
            "list-tags",
            "--tls-verify=false",
            "--authfile",
            str(skopeo.authfile),
            f"docker://{server.host_port}/e2e/tags",
        ).stdout
    )
    assert listed["Repository"] == f"{server.host_port}/e2e/tags"
    assert sorted(listed["Tags"]) == ["1.0", "2.0", "latest"]


def test_delete_manifest(
    skopeo: Skopeo, layout: IndexLayout, session_registry: RegistryServer
) -> None:
    server = session_registry
    skopeo.copy_all(f"oci:{layout.root}:multi", _docker_ref(server, "e2e/doomed", "1"))
    skopeo.copy_all(f"oci:{layout.root}:multi", _docker_ref(server, "e2e/kept", "1"))

    skopeo.run(
        "delete",
        "--tls-verify=false",
        "--authfile",
        str(skopeo.authfile),
        _docker_ref(server, "e2e/doomed", "1"),
    )

    gone = skopeo.run(
        "inspect",
        "--raw",
        "--tls-verify=false",
        _docker_ref(server, "e2e/doomed", "1"),
        check=False,
    )
    assert gone.returncode != 0
    with server.client() as client:
        by_digest = client.get(
            f"/v2/e2e/doomed/manifests/{layout.index_digest}", headers={"Accept": OCI_INDEX}
        )
        assert by_digest.status_code == 404
        assert by_digest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # The same index in another repository is untouched.
    assert skopeo.raw(_docker_ref(server, "e2e/kept", "1")) == layout.index_bytes
