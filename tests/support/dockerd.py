"""A Docker engine for end-to-end tests: ``DOCKER_HOST`` when it answers, else our own dockerd.

Our own daemon keeps everything under one short ``/tmp`` directory (unix socket paths are
limited to about 108 bytes, and containerd nests its sockets under the exec root), and by
default uses the ``vfs`` storage driver (no overlay mounts needed), no iptables and no
bridge; ``tests/deploy`` asks it for overlay2, a persistent data root and a bridge. Docker allows
plain-HTTP registries on 127.0.0.0/8 by default, so no ``insecure-registries`` setting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.server import stop_process
from support.tools import require_tool, unavailable


class DockerError(RuntimeError):
    """A docker command failed; the message carries its command line, exit code and stderr."""


@dataclass
class DockerEngine:
    """A reachable Docker daemon and a CLI environment pointed at it."""

    host: str
    config_dir: Path
    owned_pid: int | None = None
    base_dir: Path | None = None
    server_version: str = ""
    _env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        if not self._env:
            self._env = {
                **os.environ,
                "DOCKER_HOST": self.host,
                # A private CLI config: no credentials or contexts of the developer leak in.
                "DOCKER_CONFIG": str(self.config_dir),
                # The classic builder ships with the daemon; BuildKit needs the buildx plugin.
                "DOCKER_BUILDKIT": "0",
            }
            self._env.pop("DOCKER_CONTEXT", None)
        return self._env

    def run(
        self, *args: str, check: bool = True, timeout: float = 600.0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; raise ``DockerError`` on a non-zero exit when ``check``."""
        cmd = ["docker", *args]
        result = subprocess.run(
            cmd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
        if check and result.returncode != 0:
            raise DockerError(
                f"{' '.join(cmd)} exited with {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def out(self, *args: str, timeout: float = 600.0) -> str:
        """Stripped stdout of a successful ``docker ARGS``."""
        return self.run(*args, timeout=timeout).stdout.strip()


def server_version(host: str, config_dir: Path) -> str | None:
    """The daemon's version at ``host``, or None when it does not answer."""
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config_dir)}
    env.pop("DOCKER_CONTEXT", None)
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def ping(socket_path: Path) -> bool:
    """Whether a daemon answers ``/_ping`` on the unix socket ``socket_path``."""
    if not socket_path.exists():
        return False
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, timeout=2.0) as client:
            return client.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def overlay_or_vfs(scratch: Path) -> str:
    """``overlay2`` if an overlay mount works under ``scratch`` (root, kernel), else ``vfs``."""
    dirs = [scratch / "ovl" / part for part in ("lower", "upper", "work", "merged")]
    for path in dirs:
        path.mkdir(parents=True)
    options = f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}"
    try:
        mount = ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs[3])]
        if subprocess.run(mount, capture_output=True, timeout=30, check=False).returncode != 0:
            return "vfs"
        subprocess.run(["umount", str(dirs[3])], capture_output=True, timeout=30, check=False)
        return "overlay2"
    finally:
        shutil.rmtree(scratch / "ovl", ignore_errors=True)


_CONTAINERD_SLOW = "timeout waiting for containerd to start"


def _start_dockerd(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


@contextmanager
def own_dockerd(
    ready_timeout: float = 90.0,
    *,
    storage_driver: str = "vfs",
    data_root: Path | None = None,
    bridge: str | None = None,
    extra_args: Sequence[str] = (),
    stop_timeout: float = 40.0,
) -> Iterator[DockerEngine]:
    """Start a private dockerd, yield an engine for it, stop it by PID afterwards.

    Without ``bridge`` containers get no network (no iptables rules, no bridge); with it,
    dockerd attaches containers to that existing bridge and sets up NAT and port publishing.
    ``data_root`` (default: a temporary directory) lets images outlive the daemon.
    """
    dockerd = require_tool("dockerd", "docker.io")
    require_tool("containerd", "containerd")
    require_tool("runc", "runc")
    if bridge is not None:
        require_tool("iptables", "iptables")
    if os.geteuid() != 0:
        unavailable("starting a private dockerd needs root (or set DOCKER_HOST)")
    base = Path(tempfile.mkdtemp(prefix="ldk", dir="/tmp"))
    exec_root = base / "x"
    socket_path = exec_root / "docker.sock"
    exec_root.mkdir()
    (base / "cli").mkdir()
    cmd = [
        dockerd,
        f"--storage-driver={storage_driver}",
        f"--data-root={data_root or base / 'data'}",
        f"--exec-root={exec_root}",
        f"--pidfile={base / 'docker.pid'}",
        f"-H=unix://{socket_path}",
    ]
    if bridge is None:
        cmd += ["--iptables=false", "--ip6tables=false", "--bridge=none"]
    else:
        cmd.append(f"--bridge={bridge}")
    cmd += extra_args
    log_path = base / "dockerd.log"
    deadline = time.monotonic() + ready_timeout
    proc = _start_dockerd(cmd, log_path)
    try:
        while not ping(socket_path):
            if (
                proc.poll() is not None
                and _CONTAINERD_SLOW in _log_tail(log_path)
                and (time.monotonic() < deadline)
            ):
                # dockerd gives its containerd a fixed ~10 s to start; on a busy machine
                # that can pass. Nothing is running yet, so starting again is safe.
                proc = _start_dockerd(cmd, log_path)
                continue
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DockerError(
                    f"dockerd did not start (exit {proc.poll()}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.2)
        host = f"unix://{socket_path}"
        engine = DockerEngine(host, base / "cli", owned_pid=proc.pid, base_dir=base)
        engine.server_version = server_version(host, engine.config_dir) or "unknown"
        yield engine
    finally:
        # dockerd stops its containerd on SIGTERM; leftovers are killed by PID.
        stop_process(proc, term_timeout=stop_timeout)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def docker_engine(config_parent: Path) -> Iterator[DockerEngine]:
    """The engine at ``DOCKER_HOST`` if set and answering, else a private dockerd."""
    require_tool("docker", "docker.io")
    host = os.environ.get("DOCKER_HOST", "").strip()
    if host:
        config_dir = config_parent / "docker-cli"
        config_dir.mkdir(parents=True, exist_ok=True)
        version = server_version(host, config_dir)
        if version is not None:
            yield DockerEngine(host, config_dir, server_version=version)
            return
    with own_dockerd() as engine:
        yield engine
