"""Print the configuration reference table of docs/deployment.md from the Settings model.

.venv/bin/python deploy/settings_table.py
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic_core import PydanticUndefined

from registry.settings import ENV_PREFIX, Settings


def _comments() -> dict[str, str]:
    """The ``#`` comment lines just above each field in registry/settings.py."""
    source = inspect.getsource(Settings).splitlines()
    notes: dict[str, str] = {}
    pending: list[str] = []
    for line in source:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# ").strip())
            continue
        if ":" in stripped and not stripped.startswith(("def ", "@", "model_config", "return")):
            name = stripped.split(":", 1)[0].strip()
            if name.isidentifier() and name in Settings.model_fields:
                notes[name] = " ".join(pending)
        pending = []
    return notes


def _default(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "(unset)"
    if value == "":
        return '""'
    return f"`{value}`"


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("pydantic.types.", "")
    return text.replace("|", "\\|")


def main() -> None:
    notes = _comments()
    print("| setting (YAML key) | environment variable | type | default | notes |")
    print("| --- | --- | --- | --- | --- |")
    for name, field in Settings.model_fields.items():
        note = notes.get(name, "").replace("|", "\\|")
        env = f"{ENV_PREFIX}{name.upper()}"
        kind, default = _type(field.annotation), _default(field.default)
        print(f"| `{name}` | `{env}` | {kind} | {default} | {note} |")


if __name__ == "__main__":
    main()
