"""Image round trips: skopeo copy of a generated OCI layout, docker push/pull."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Server, stop_pid

MiB = 1024 * 1024
PULLS = 3  # docker pulls per server; the median is reported
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _write_blob(layout: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexd).write_bytes(data)
    return "sha256:" + hexd


def build_oci_layout(dest: Path, layers: int, layer_mib: int, tag: str = "bench") -> Path:
    """An OCI image layout with `layers` layers of incompressible random data.

    Layers are gzip with compression level 0 (stored): a valid tar+gzip media type that
    costs nothing to build, and whose size equals the payload.
    """
    (dest / "blobs" / "sha256").mkdir(parents=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs, diff_ids = [], []
    for i in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"layer{i:02d}.bin")
            payload = os.urandom(layer_mib * MiB)
            info.size = len(payload)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(payload))
        tar_bytes = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        gz = gzip.compress(tar_bytes, compresslevel=0, mtime=0)
        descs.append({"mediaType": GZIP_LAYER, "digest": _write_blob(dest, gz), "size": len(gz)})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _write_blob(dest, config),
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _write_blob(dest, manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def _timed(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {(proc.stderr or proc.stdout)[-800:]}")
    return took


def skopeo_round_trip(
    server: Server, layout: Path, tag: str = "bench", timeout: float = 300, pulls: int = 3
) -> dict[str, float]:
    """One copy in; the median of ``pulls`` copies out, each into a fresh layout.

    Only the copy out repeats: skopeo remembers where the registry holds each blob, so a
    second copy in, even into another repository, mounts the layers instead of uploading.
    """
    ref = f"docker://127.0.0.1:{server.port}/bench/skopeo:{tag}"
    base = ["skopeo", "--insecure-policy", "copy", "--quiet"]
    push = _timed([*base, "--dest-tls-verify=false", f"oci:{layout}:{tag}", ref], timeout)
    times = []
    for _ in range(pulls):
        with tempfile.TemporaryDirectory(prefix="bench-skopeo-out-") as out:
            times.append(
                _timed([*base, "--src-tls-verify=false", ref, f"oci:{out}/img:{tag}"], timeout)
            )
    return {"copy_in_s": push, "copy_out_s": statistics.median(times)}


@dataclass
class DockerEngine:
    """A Docker engine: the one in DOCKER_HOST, or our own dockerd stopped by PID."""

    host: str
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    image: str = "lading-bench/app:1"
    saved: Path | None = None
    exec_root: Path | None = None
    refs: tuple[str, ...] = ("lading-bench/app:1", "lading-bench/base:1")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if proc.returncode != 0:
            raise RuntimeError(f"docker {args[0]} failed: {(proc.stderr or proc.stdout)[-800:]}")
        return proc.stdout

    @classmethod
    def start(cls, timeout: float = 60) -> DockerEngine:
        if os.environ.get("DOCKER_HOST"):
            eng = cls(os.environ["DOCKER_HOST"])
            eng.docker("version")
            eng.workdir = Path(tempfile.mkdtemp(prefix="bench-docker-"))
            return eng
        if os.geteuid() != 0:
            raise RuntimeError("DOCKER_HOST unset and not root: cannot start dockerd")
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd not installed (apt-get install docker.io)")
        work = Path(tempfile.mkdtemp(prefix="bench-docker-"))
        exec_root = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))  # short: socket paths
        sock = work / "docker.sock"
        cmd = [
            "dockerd",
            "--storage-driver=vfs",
            f"--data-root={work / 'data'}",
            f"--exec-root={exec_root}",
            f"--pidfile={work / 'dockerd.pid'}",
            "-H",
            f"unix://{sock}",
            "--iptables=false",
            "--bridge=none",
        ]
        with open(work / "dockerd.log", "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        eng = cls(f"unix://{sock}", proc, work, exec_root=exec_root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (work / "dockerd.log").read_text(errors="replace")[-800:]
                eng.stop()
                raise RuntimeError(f"dockerd exited: {tail}")
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                eng.docker("version", timeout=5)
                return eng
            time.sleep(0.3)
        eng.stop()
        raise RuntimeError("dockerd did not come up")

    def build_image(self, layers: int, layer_mib: int) -> None:
        """busybox-static rootfs (docker import) + COPY/RUN layers of random data."""
        assert self.workdir is not None
        ctx = self.workdir / "ctx"
        (ctx / "rootfs" / "bin").mkdir(parents=True)
        busybox = shutil.which("busybox") or "/bin/busybox"
        shutil.copy(busybox, ctx / "rootfs" / "bin" / "busybox")
        for app in ("sh", "dd", "cat", "ls"):
            (ctx / "rootfs" / "bin" / app).symlink_to("busybox")
        with tarfile.open(ctx / "rootfs.tar", "w") as tar:
            tar.add(ctx / "rootfs", arcname=".")
        self.docker("import", str(ctx / "rootfs.tar"), "lading-bench/base:1")
        lines = ["FROM lading-bench/base:1"]
        for i in range(layers):
            if i % 2 == 0:
                (ctx / f"data{i}").write_bytes(os.urandom(layer_mib * MiB))
                lines.append(f"COPY data{i} /data{i}")
            else:
                lines.append(
                    f'RUN ["/bin/sh", "-c", "dd if=/dev/urandom of=/run{i} bs=1M '
                    f'count={layer_mib} 2>/dev/null"]'
                )
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        (ctx / ".dockerignore").write_text("rootfs\nrootfs.tar\n")
        self.docker("build", "--network=none", "-q", "-t", self.image, str(ctx), timeout=600)
        self.saved = self.workdir / "image.tar"
        self.docker("save", "-o", str(self.saved), self.image)
        self._wipe()

    def _wipe(self, *extra: str) -> None:
        """Remove only the images this benchmark made, so a pull really downloads."""
        for ref in (*self.refs, *extra):
            with contextlib.suppress(RuntimeError):
                self.docker("rmi", "-f", ref)

    def round_trip(self, server: Server, timeout: float = 600) -> dict[str, float]:
        assert self.saved is not None
        self.docker("load", "-q", "-i", str(self.saved))
        remote = f"127.0.0.1:{server.port}/bench/docker:1"
        self.docker("tag", self.image, remote)
        push = _timed(["docker", "push", "-q", remote], timeout, self.env)
        self._wipe(remote)
        # A pull takes about half a second, so one run swings by +-10 %: take the median
        # of a few (each after removing every local copy). A push can run only once.
        pulls = []
        for _ in range(PULLS):
            pulls.append(_timed(["docker", "pull", "-q", remote], timeout, self.env))
            self._wipe(remote)
        return {"push_s": push, "pull_s": statistics.median(pulls), "pulls_s": pulls}

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._wipe()
        if self.proc is not None:
            stop_pid(self.proc, grace=30)
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self.exec_root is not None:
            shutil.rmtree(self.exec_root, ignore_errors=True)
            self.exec_root = None
