"""docker-compose.yml is a valid Compose Specification file, for Compose v2 and v1.

Compose v2 validates every file against the Compose Specification's JSON schema before
anything else (``config`` does nothing more), so it is the schema check; v1 (>= 1.28) is
still what Debian 12 ships. Fast: no Docker engine, no image.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from compose_tools import require_compose

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROFILES = {
    (): {"db", "lading"},
    ("s3",): {"db", "lading", "s3"},
    ("tls",): {"db", "lading", "proxy"},
    ("s3", "tls"): {"db", "lading", "s3", "proxy"},
}


def _config(
    binary: str, compose_file: Path, profiles: tuple[str, ...], *args: str
) -> subprocess.CompletedProcess[str]:
    # Only the documented example env file: nothing of the caller's environment leaks in.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LADING_", "COMPOSE_", "DOCKER_"))
    }
    env["LADING_ENV_FILE"] = str(REPO / "deploy" / "lading.env.example")
    selected = [part for name in profiles for part in ("--profile", name)]
    cmd = [binary, "-f", str(compose_file), "--project-directory", str(REPO), *selected]
    return subprocess.run(
        [*cmd, "config", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("profiles", list(PROFILES), ids=lambda p: "+".join(p) or "default")
def test_compose_v2_accepts_the_file(profiles: tuple[str, ...]) -> None:
    result = _config(require_compose("v2"), COMPOSE_FILE, profiles, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"compose v2 warned: {result.stderr}"
    model = json.loads(result.stdout)
    assert set(model["services"]) == PROFILES[profiles]
    lading = model["services"]["lading"]
    assert lading["depends_on"]["db"]["condition"] == "service_healthy"
    assert lading["stop_grace_period"] == "40s"


def test_compose_v2_rejects_what_the_schema_forbids(tmp_path: Path) -> None:
    """The check can fail: a misspelt service key is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    stop_grace_period: 40s", "    stop_grace: 40s")
    )
    assert broken.read_text() != COMPOSE_FILE.read_text()
    result = _config(require_compose("v2"), broken, ())
    assert result.returncode != 0
    assert "stop_grace" in result.stderr, result.stderr


@pytest.mark.parametrize("profiles", list(PROFILES), ids=lambda p: "+".join(p) or "default")
def test_compose_v1_accepts_the_file(profiles: tuple[str, ...]) -> None:
    result = _config(require_compose("v1"), COMPOSE_FILE, profiles)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"compose v1 warned: {result.stderr}"
    # v1's config lists every service whatever the profiles.
    model = yaml.safe_load(result.stdout)
    assert set(model["services"]) == PROFILES[("s3", "tls")]
    assert model["services"]["lading"]["depends_on"]["db"]["condition"] == "service_healthy"
