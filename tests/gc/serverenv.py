"""Running ``lading`` commands against the data of a test server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from support.server import RegistryServer, lading_command


def database_env(backend: str, tmp_path: Path) -> dict[str, str]:
    if backend == "postgres":
        from support.postgres import fresh_database_url

        url = fresh_database_url()
    else:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    return {"LADING_DATABASE_URL": url}


def lading(
    server: RegistryServer, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **server.extra_env, **(env or {})}
    return subprocess.run(
        [*lading_command(), *args, "--data-dir", str(server.data_dir)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gc(server: RegistryServer, *extra: str, delay: float | None = 0.0) -> str:
    """``lading gc``; ``delay=None`` keeps the server's configured grace period."""
    delay_args = [] if delay is None else ["--delay", str(delay)]
    done = lading(server, "gc", *delay_args, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fsck(server: RegistryServer) -> dict[str, Any]:
    done = lading(server, "fsck", "--json")
    report: dict[str, Any] = json.loads(done.stdout)
    return report
