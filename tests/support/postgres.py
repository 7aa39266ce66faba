"""A throwaway PostgreSQL cluster from Debian's packages, and fresh databases in it.

The cluster runs on 127.0.0.1 at a free port with trust authentication, as the
``postgres`` OS user when we are root (initdb refuses root). Its default collation
is ICU ``en-US`` where available, so code that relies on byte-wise ordering without
``COLLATE "C"`` fails here as it would on a typical production server.

``LADING_TEST_DATABASE=postgres`` makes ``lading serve`` test servers use a fresh
database of this cluster (see ``support.server``). Under ``CI=true`` a missing
PostgreSQL fails the test instead of skipping it.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tools import free_port, unavailable

DATABASE_ENV = "LADING_TEST_DATABASE"
_lock = threading.Lock()
_cluster: PostgresCluster | None = None


def wants_postgres() -> bool:
    return os.environ.get(DATABASE_ENV, "sqlite").strip().lower() in {"postgres", "postgresql"}


def _bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _install() -> Path | None:
    """apt-get install postgresql when we may (root); None if it still is missing."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    return _bin_dir()


class PostgresCluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="lading-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.pid: int | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def start(self) -> None:
        base = ["initdb", "-D", str(self.data), "-A", "trust", "-U", "lading", "-E", "UTF8"]
        result = self._run(*base, "--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8")
        if result.returncode != 0:  # no ICU: still a working cluster
            shutil.rmtree(self.data, ignore_errors=True)
            result = self._run(*base, "--locale=C.UTF-8")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if result.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://lading@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        for attempt in range(50):
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=lading dbname=postgres", autocommit=True
                ) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        return self.url(name)


def cluster() -> PostgresCluster:
    """The session's cluster, started on first use; skips (fails under CI) without PostgreSQL."""
    global _cluster
    with _lock:
        if _cluster is None:
            bin_dir = _bin_dir() or _install()
            if bin_dir is None:
                unavailable("PostgreSQL is not installed (apt-get install postgresql)")
            started = PostgresCluster(bin_dir)
            started.start()
            atexit.register(started.stop)
            _cluster = started
        return _cluster


def fresh_database_url() -> str:
    return cluster().create_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (SQLAlchemy URL)."""
    yield fresh_database_url()


def server_env(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Under ``LADING_TEST_DATABASE=postgres``: ``env`` plus a database URL for a server
    whose data lives in ``data_dir`` (the same database again when it restarts there)."""
    if not wants_postgres() or "LADING_DATABASE_URL" in env:
        return env
    marker = data_dir / "test-database-url"
    if marker.exists():
        url = marker.read_text().strip()
    else:
        url = fresh_database_url()
        data_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(url)
    return {**env, "LADING_DATABASE_URL": url}
