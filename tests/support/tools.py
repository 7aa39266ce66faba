"""Finding external tools; under ``CI=true`` a missing tool fails the test instead of skipping."""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` on a developer machine; fail under CI, where every tool must exist."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, package: str | None = None) -> str:
    """Absolute path of the executable ``name``, or skip/fail (see ``unavailable``)."""
    path = shutil.which(name)
    if path is None:
        hint = f" (apt-get install {package})" if package else ""
        unavailable(f"{name} is not installed{hint}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
