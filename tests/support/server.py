"""Registry servers run as real subprocesses: ``lading serve`` or the reference registry.

The reference is CNCF distribution (``docker-registry``, Debian package ``docker-registry``).
``LADING_TEST_TARGET=reference`` points the target-following fixtures at it, so the same
end-to-end tests can validate their expectations against a mature implementation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import psutil

from support import postgres
from support.tools import free_port, require_tool, unavailable

Kind = Literal["lading", "reference"]
TARGET_ENV = "LADING_TEST_TARGET"
KINDS: tuple[Kind, ...] = ("lading", "reference")


class ServerStartError(RuntimeError):
    """The server exited or never answered ``GET /v2/``; the message ends with its log."""


def target_kind() -> Kind:
    """Which registry the target-following fixtures run (``LADING_TEST_TARGET``, default lading)."""
    value = os.environ.get(TARGET_ENV, "lading").strip().lower() or "lading"
    for kind in KINDS:
        if value == kind:
            return kind
    raise ValueError(f"{TARGET_ENV} must be one of {', '.join(KINDS)}, not {value!r}")


def stop_process(proc: subprocess.Popen[bytes], term_timeout: float = 20.0) -> None:
    """SIGTERM ``proc`` by PID, SIGKILL after ``term_timeout``; then kill leftover children.

    The children are recorded before the signal, and psutil refuses to signal a recycled PID.
    """
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=term_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def tree_rss(pid: int) -> int:
    """Resident set size in bytes of ``pid`` plus all its descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class RegistryServer:
    """A registry process listening on ``url`` (``http://127.0.0.1:PORT``)."""

    kind: Kind
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """RSS of the server and its worker processes."""
        return tree_rss(self.pid)

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """An HTTP client whose relative URLs resolve against this server."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self) -> None:
        stop_process(self.process)


def wait_ready(
    server: RegistryServer, timeout: float, ready_statuses: Iterable[int] = (200,)
) -> None:
    wanted = set(ready_statuses)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.kind} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            status = httpx.get(f"{server.url}/v2/", timeout=2.0).status_code
        except httpx.HTTPError as exc:
            last = repr(exc)
        else:
            if status in wanted:
                return
            last = f"GET /v2/ answered {status}"
        time.sleep(0.1)
    server.stop()
    raise ServerStartError(f"{server.kind} not ready in {timeout}s ({last}):\n{server.log_tail()}")


def lading_command() -> list[str]:
    """The ``lading`` console script of this interpreter's environment, else ``-m registry.cli``."""
    script = Path(sys.executable).with_name("lading")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "registry.cli"]


def lading_env(data_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``lading`` process (``serve``, ``gc``, ...) on ``data_dir``.

    ``env`` is laid over this process's environment; under ``LADING_TEST_DATABASE=postgres``
    a database URL is added, the same one for every process on ``data_dir``.
    """
    return postgres.server_env(data_dir, {**os.environ, **(env or {})})


def _launch(
    kind: Kind, cmd: list[str], env: dict[str, str], base_dir: Path, data_dir: Path, port: int
) -> RegistryServer:
    log_path = base_dir / f"{kind}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    return RegistryServer(kind, port, data_dir, log_path, proc)


def start_lading(
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
    port: int | None = None,
    ready_timeout: float = 60.0,
    ready_statuses: Iterable[int] = (200,),
) -> RegistryServer:
    """Start ``lading serve`` with its data in ``base_dir/data`` and wait for ``GET /v2/``.

    ``env`` is laid over this process's environment (so ``LADING_*`` settings pass through);
    ``args`` are appended to the serve command line. Accept 401 in ``ready_statuses`` when the
    server enforces authentication.
    """
    data_dir = base_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = lading_env(data_dir, env)
    extra = list(args)
    statuses = tuple(ready_statuses)
    for attempt in range(3):
        chosen = port or free_port()
        cmd = [
            *lading_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
            "--data-dir",
            str(data_dir),
            *extra,
        ]
        server = _launch("lading", cmd, full_env, base_dir, data_dir, chosen)
        server.extra_env = dict(env or {})
        try:
            wait_ready(server, ready_timeout, statuses)
        except ServerStartError as exc:
            # Another process may have taken the free port between probe and bind: retry.
            if port is None and attempt < 2 and "address already in use" in str(exc).lower():
                continue
            raise
        return server
    raise AssertionError("unreachable")


# Shared with bench/servers.py, so tests and benchmarks run the reference alike: the
# stock config's nosniff header, no redirects, a short drain so it stops quickly.
REFERENCE_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
http:
  addr: 127.0.0.1:{port}
  draintimeout: 2s
  headers:
    X-Content-Type-Options: [nosniff]
"""


def start_reference(
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 30.0,
) -> RegistryServer:
    """Start the reference registry (CNCF distribution 2.8) with filesystem storage."""
    binary = require_tool("docker-registry", "docker-registry")
    data_dir = base_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    chosen = port or free_port()
    config = base_dir / f"reference-{chosen}.yml"
    config.write_text(REFERENCE_CONFIG.format(root=data_dir, port=chosen))
    full_env = {**os.environ, **(env or {})}
    server = _launch(
        "reference", [binary, "serve", str(config)], full_env, base_dir, data_dir, chosen
    )
    wait_ready(server, ready_timeout)
    return server


def start_registry(
    kind: Kind,
    base_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
) -> RegistryServer:
    """Start a registry of ``kind``; ``args`` only apply to lading."""
    if kind == "lading":
        return start_lading(base_dir, env=env, args=args)
    extra = list(args)
    if extra:
        unavailable(f"lading-only arguments {extra} cannot be given to the reference registry")
    return start_reference(base_dir, env=env)


class RegistryFactory:
    """Starts registries on demand in fresh temporary directories; ``close`` stops them all."""

    def __init__(self, make_dir: Callable[[str], Path], default_kind: Kind) -> None:
        self._make_dir = make_dir
        self.default_kind = default_kind
        self.servers: list[RegistryServer] = []

    def __call__(
        self,
        *,
        kind: Kind | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
    ) -> RegistryServer:
        chosen = kind or self.default_kind
        server = start_registry(chosen, self._make_dir(chosen), env=env, args=args)
        self.servers.append(server)
        return server

    def close(self) -> None:
        while self.servers:
            self.servers.pop().stop()
