"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pydantic import SecretStr

from registry.settings import ENV_PREFIX, Settings, load_settings


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from --config/LADING_CONFIG, LADING_* and the command's own flags."""
    return load_settings(getattr(args, "config", None), overrides)


def worker_count(settings: Settings) -> int:
    return settings.workers or max(os.cpu_count() or 1, 1)


def export_settings(settings: Settings) -> None:
    """Let worker processes rebuild the same settings from the environment."""
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    os.environ.pop(f"{ENV_PREFIX}CONFIG", None)
