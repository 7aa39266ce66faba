"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pydantic import SecretStr

from registry.settings import ENV_PREFIX, Settings, SettingsError, load_settings

NOBODY_TO_ASK = "no password given: no terminal to ask on (pipe one with --password-stdin)"
# Shared by `perm grant` and `perm-remote grant`.
GRANT_HELP = (
    "allow a user, group or robot actions on repositories matching a pattern"
    " (e.g. grant group team 'team/*' pull,push)"
)

# `--off` of `user admin|disable` and their -remote twins.
OFF_HELP = {"admin": "take admin rights away instead", "disable": "enable the user instead"}


def add_local_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --config of the commands that open the registry's data themselves."""
    parser.add_argument(
        "--data-dir", default=None, help="data directory (also LADING_DATA_DIR; default ./data)"
    )
    parser.add_argument(
        "--config",
        dest="config",
        default=argparse.SUPPRESS,
        help="YAML settings file (also LADING_CONFIG)",
    )


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from --config/LADING_CONFIG, LADING_* and the command's own flags."""
    return load_settings(getattr(args, "config", None), overrides)


def existing_registry(args: argparse.Namespace) -> Settings:
    """Settings of a registry that exists: a mistyped --data-dir must not pass for an
    empty, clean registry (and leave a new database behind)."""
    settings = settings_from_args(args, data_dir=args.data_dir)
    database = settings.data_dir / "lading.db"
    if settings.database_url is None and not database.exists():
        raise SettingsError(
            f"no registry in {settings.data_dir}: {database} does not exist"
            " (give --data-dir, LADING_DATA_DIR or data_dir of an existing registry)"
        )
    return settings


def worker_count(settings: Settings) -> int:
    return settings.workers or max(os.cpu_count() or 1, 1)


def export_settings(settings: Settings) -> None:
    """Let worker processes rebuild the same settings from the environment."""
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    os.environ.pop(f"{ENV_PREFIX}CONFIG", None)
