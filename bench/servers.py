"""Start, watch and stop the registries (and a throwaway PostgreSQL) under test."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# The reference registry's config is shared with the tests (tests/support/server.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import REFERENCE_CONFIG

REPO_ROOT = Path(__file__).resolve().parent.parent
LADING_BIN = REPO_ROOT / ".venv" / "bin" / "lading"
REFERENCE_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_pid(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group we created for `proc` (by its PID), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    keep: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        stop_pid(self.proc)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _launch(
    name: str, cmd: list[str], workdir: Path, port: int, env: dict[str, str] | None = None
) -> Server:
    """Start ``cmd`` in its own process group, logging to ``workdir``; wait for ``/v2/``."""
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: we stop it (and its workers) by PID
        )
    server = Server(name, proc, port, workdir, log_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_reference(name: str = "reference") -> Server:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    cfg = workdir / "config.yml"
    cfg.write_text(REFERENCE_CONFIG.format(root=workdir / "data", port=port))
    return _launch(name, [REFERENCE_BIN, "serve", str(cfg)], workdir, port)


def start_lading(name: str = "lading", extra_env: dict[str, str] | None = None) -> Server:
    """Plain `lading serve` with its defaults, data under a fresh temp dir."""
    if not LADING_BIN.exists():
        raise RuntimeError(f"{LADING_BIN} not found (pip install -e . into .venv)")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    port = free_port()
    data = workdir / "data"
    data.mkdir()
    env = dict(os.environ)
    env.update(extra_env or {})
    cmd = [str(LADING_BIN), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", str(data)]
    return _launch(name, cmd, workdir, port, env)


@dataclass
class ProcSampler:
    """Samples RSS (process + all descendants) every `interval` s in a thread; keeps the peak.

    Also reports the CPU seconds the process tree used between start() and stop().
    """

    pid: int
    interval: float = 0.05
    peak_rss: int = 0
    base_rss: int = 0
    peak_proc_rss: int = 0  # largest single process (e.g. one uvicorn worker)
    samples: int = 0
    cpu_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cpu: dict[int, float] = field(default_factory=dict)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> None:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                rss = proc.memory_info().rss
                total += rss
                self.peak_proc_rss = max(self.peak_proc_rss, rss)
                t = proc.cpu_times()
                self._cpu[proc.pid] = t.user + t.system + t.children_user + t.children_system
        self.peak_rss = max(self.peak_rss, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ProcSampler:
        self._sample()
        self.base_rss = self.peak_rss
        self._cpu0 = sum(self._cpu.values())
        self._known0 = dict(self._cpu)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()
        self.cpu_seconds = sum(self._cpu.values()) - self._cpu0


class ClientCpu:
    """CPU seconds used by this (client) process while the block ran, and the wall time."""

    def __enter__(self) -> ClientCpu:
        self._p = psutil.Process()
        t = self._p.cpu_times()
        self._c0 = t.user + t.system
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t = self._p.cpu_times()
        self.cpu = t.user + t.system - self._c0
        self.wall = time.perf_counter() - self._w0

    @property
    def share(self) -> float:
        """Fraction of one core the client used (1.0 = one core saturated)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pg_bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(dirs[-1]) if dirs else None


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster from Debian's packages, listening on 127.0.0.1 only.

    As root it runs as the `postgres` system user (PostgreSQL refuses root).
    """

    port: int = 0
    workdir: Path | None = None
    pid: int | None = None
    bindir: Path | None = None
    user: str = "postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=timeout)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/lading"

    def start(self) -> Postgres:
        self.bindir = _pg_bindir()
        if self.bindir is None:
            raise RuntimeError("no /usr/lib/postgresql/*/bin: apt-get install postgresql")
        if os.geteuid() != 0:
            self.user = psutil.Process().username()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.workdir.chmod(0o755)
        data, sock = self.workdir / "data", self.workdir / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.workdir, self.user)
            shutil.chown(sock, self.user)
        self.port = free_port()
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "-l",
            str(self.workdir / "pg.log"),
            "start",
        )
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "lading",
        )
        return self

    def stop(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)  # postmaster "fast" shutdown
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
