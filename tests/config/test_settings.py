"""Settings: defaults, a YAML file, LADING_* variables (highest wins), clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from registry.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings(environ={})
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 5000, 1)
    assert settings.storage == "filesystem"
    assert settings.resolved_database_url().startswith("sqlite:///")
    assert settings.resolved_database_url().endswith("data/lading.db")


def test_yaml_file_with_sections_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "lading.yaml"
    config.write_text(
        "port: 5123\nstorage: s3\ns3:\n  bucket: images\n  region: eu-west-1\n"
        "auth:\n  mode: token\n"
    )
    settings = load_settings(config, environ={"LADING_S3_REGION": "us-east-2"})
    assert settings.port == 5123
    assert settings.s3_bucket == "images"
    assert settings.s3_region == "us-east-2"  # the environment beats the file
    assert settings.auth_mode == "token"
    # LADING_CONFIG names the file when no --config is given.
    assert load_settings(environ={"LADING_CONFIG": str(config)}).port == 5123


@pytest.mark.parametrize(
    ("content", "environ", "fragment"),
    [
        ("port: 99999\n", {}, "port"),
        ("no_such_setting: 1\n", {}, "no_such_setting"),
        ("- a\n- b\n", {}, "mapping"),
        ("port: [unclosed\n", {}, "cannot read"),
        ("", {"LADING_WORKERS": "many"}, "workers"),
    ],
)
def test_bad_settings_name_the_problem(
    tmp_path: Path, content: str, environ: dict[str, str], fragment: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=fragment):
        load_settings(config, environ=environ)


def test_serve_reads_its_config_file(tmp_path: Path, unused_tcp_port: int) -> None:
    config = tmp_path / "lading.yaml"
    config.write_text(f"port: {unused_tcp_port}\ndata_dir: {tmp_path / 'data'}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{unused_tcp_port}/v2/", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200
        assert (tmp_path / "data" / "lading.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_bad_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("storage: floppy\n")
    done = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("lading: invalid settings: storage")


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_throttle_and_argon2_settings_reach_the_auth_package(tmp_path: Path) -> None:
    from registry.app import build_auth_settings

    config = tmp_path / "lading.yml"
    config.write_text("auth:\n  throttle:\n    max_failures: 7\n  argon2:\n    time_cost: 4\n")
    settings = load_settings(
        config,
        environ={
            "LADING_AUTH_THROTTLE_MAX_FAILURES_PER_IP": "11",
            "LADING_AUTH_ARGON2_MEMORY_KIB": "1024",
        },
    )
    auth = build_auth_settings(settings)
    assert auth.throttle.max_failures == 7
    assert auth.throttle.max_failures_per_ip == 11
    assert auth.argon2.time_cost == 4 and auth.argon2.memory_kib == 1024
    with pytest.raises(SettingsError, match="auth_throttle_lockout_seconds"):
        load_settings(environ={"LADING_AUTH_THROTTLE_LOCKOUT_SECONDS": "0"})


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"LADING_STORAGE": "s3"}, "s3_bucket"),
        (
            {"LADING_STORAGE": "s3", "LADING_S3_BUCKET": "b", "LADING_S3_ACCESS_KEY": "k"},
            "s3_secret_key",
        ),
        ({"LADING_STORAGE": "s3", "LADING_S3_BUCKET": "b", "LADING_S3_PREFIX": "a b"}, "s3_prefix"),
        ({"LADING_AUTH_MODE": "token", "LADING_AUTH_ADMIN_USERNAME": "admin"}, "admin_password"),
        ({"LADING_AUTH_MODE": "external"}, "jwks_file"),
        ({"LADING_AUTH_MODE": "external", "LADING_AUTH_JWKS_FILE": "/no/such.json"}, "JWKS"),
        ({"LADING_MIGRATE_ON_START": "false"}, "lading migrate upgrade"),
    ],
)
def test_settings_the_components_reject_are_one_line_errors(
    tmp_path: Path, environ: dict[str, str], fragment: str
) -> None:
    """Found while building the registry, not by the settings model: still exit 2 and one
    line naming the setting, as for settings the model rejects (no traceback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    done = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **environ},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lading: "), done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("change-me", "too short"),
        ("0123456789abcdef0123456789abcde", "too short"),  # 31 characters
        ("ab" * 20, "too repetitive"),
        ("0123456789abcdef 0123456789abcdef", "printable ASCII without spaces"),
        ("0123456789abcdef0123456789abcdef\n", "printable ASCII without spaces"),
    ],
)
def test_a_weak_admin_token_is_refused(token: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment) as refused:
        load_settings(environ={"LADING_ADMIN_TOKEN": token})
    message = str(refused.value)
    assert message.startswith("invalid settings: admin_token: ")
    assert "openssl rand -hex 32" in message
    assert token.strip() not in message  # a secret, even a weak one, is never echoed


def test_a_strong_or_empty_admin_token_is_accepted() -> None:
    strong = "0123456789abcdef0123456789abcdef"  # `openssl rand -hex 16` looks like this
    assert load_settings(environ={"LADING_ADMIN_TOKEN": strong}).admin_token == strong
    # An empty variable leaves the token unset, as before.
    assert load_settings(environ={"LADING_ADMIN_TOKEN": ""}).admin_token is None


def test_serve_refuses_a_short_admin_token_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    done = subprocess.run(
        [sys.executable, "-m", "registry.cli", "serve", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "LADING_ADMIN_TOKEN": "s3cret"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lading: invalid settings: admin_token: "), done.stderr
    assert done.stderr.count("\n") == 1 and "openssl rand -hex 32" in done.stderr
    assert "s3cret" not in done.stderr
    assert not (tmp_path / "data" / "lading.db").exists()
