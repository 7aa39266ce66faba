"""docs/deployment.md's configuration reference matches registry/settings.py (fast, no engine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    path = REPO / "deploy" / "settings_table.py"
    spec = importlib.util.spec_from_file_location("settings_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_table_is_generated_from_the_settings() -> None:
    generator = _generator()
    documented = generator.documented_table((REPO / "docs" / "deployment.md").read_text())
    assert documented == generator.table(), (
        "docs/deployment.md's configuration table is stale: run "
        ".venv/bin/python deploy/settings_table.py --write"
    )
