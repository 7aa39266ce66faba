"""s3_part_size, s3_max_concurrency, s3_max_parts, s3_complete_timeout: defaults, YAML,
LADING_S3_* variables, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.app import build_driver
from registry.settings import SettingsError, load_settings
from storage.s3 import S3Driver

MiB = 1024 * 1024


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.s3_part_size == 8 * MiB
    assert settings.s3_max_concurrency == 4
    assert settings.s3_max_parts == 10_000
    assert settings.s3_complete_timeout == 600.0


def test_yaml_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "lading.yaml"
    config.write_text(f"s3:\n  part_size: {16 * MiB}\n  max_concurrency: 8\n")
    from_file = load_settings(config, environ={})
    assert (from_file.s3_part_size, from_file.s3_max_concurrency) == (16 * MiB, 8)
    env = {"LADING_S3_PART_SIZE": str(32 * MiB), "LADING_S3_MAX_CONCURRENCY": "2"}
    overridden = load_settings(config, environ=env)
    assert (overridden.s3_part_size, overridden.s3_max_concurrency) == (32 * MiB, 2)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LADING_S3_PART_SIZE", str(5 * MiB - 1), r"s3_part_size: .*between 5 MiB and 5 GiB"),
        ("LADING_S3_PART_SIZE", str(5 * 1024 * MiB + 1), r"s3_part_size: .*between 5 MiB"),
        ("LADING_S3_PART_SIZE", "8MiB", r"s3_part_size: .*integer"),
        ("LADING_S3_MAX_CONCURRENCY", "0", r"s3_max_concurrency: .*greater than or equal to 1"),
        ("LADING_S3_MAX_CONCURRENCY", "65", r"s3_max_concurrency: .*less than or equal to 64"),
        ("LADING_S3_MAX_PARTS", "0", r"s3_max_parts: .*greater than or equal to 1"),
        ("LADING_S3_MAX_PARTS", "10001", r"s3_max_parts: .*less than or equal to 10000"),
        ("LADING_S3_COMPLETE_TIMEOUT", "0", r"s3_complete_timeout: .*greater than 0"),
    ],
)
def test_bad_values_are_clear_errors(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={variable: value})


def test_driver_gets_the_settings() -> None:
    settings = load_settings(
        environ={
            "LADING_STORAGE": "s3",
            "LADING_S3_BUCKET": "b",
            "LADING_S3_ENDPOINT_URL": "http://127.0.0.1:1",
            "LADING_S3_PART_SIZE": str(5 * MiB),
            "LADING_S3_MAX_CONCURRENCY": "7",
            "LADING_S3_MAX_PARTS": "1000",
            "LADING_S3_COMPLETE_TIMEOUT": "1800",
        }
    )
    driver = build_driver(settings)
    assert isinstance(driver, S3Driver)
    assert (driver.config.part_size, driver.config.max_concurrency) == (5 * MiB, 7)
    assert (driver.config.max_parts, driver.config.complete_timeout) == (1000, 1800.0)
