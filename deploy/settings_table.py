"""The configuration reference table of docs/deployment.md, generated from the Settings model.

    .venv/bin/python deploy/settings_table.py            # print the table
    .venv/bin/python deploy/settings_table.py --write    # replace it in docs/deployment.md

tests/deploy/test_settings_table.py fails when the table in the docs is stale.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from registry.settings import ENV_PREFIX, Settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
HEADER = "| setting (YAML key) | environment variable | type | default | notes |"


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


def table() -> str:
    """The Markdown table, one row per setting in declaration order."""
    notes = _comments()
    rows = [HEADER, "| --- | --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        note = notes.get(name, "").replace("|", "\\|")
        env = f"{ENV_PREFIX}{name.upper()}"
        kind, default = _type(field.annotation), _default(field.default)
        rows.append(f"| `{name}` | `{env}` | {kind} | {default} | {note} |")
    return "\n".join(rows) + "\n"


def _table_span(lines: list[str]) -> tuple[int, int]:
    """Start and end (exclusive) line index of the table in ``lines``."""
    if HEADER not in lines:
        raise ValueError(f"no configuration table (header {HEADER!r}) found")
    start = lines.index(HEADER)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def documented_table(text: str) -> str:
    """The configuration table as it stands in the docs' ``text``."""
    lines = text.splitlines()
    start, end = _table_span(lines)
    return "\n".join(lines[start:end]) + "\n"


def with_table(text: str) -> str:
    """``text`` with its configuration table replaced by the generated one."""
    lines = text.splitlines(keepends=True)
    start, end = _table_span([line.rstrip("\n") for line in lines])
    return "".join([*lines[:start], table(), *lines[end:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the table in {DOCS}")
    if parser.parse_args().write:
        DOCS.write_text(with_table(DOCS.read_text()))
    else:
        print(table(), end="")


if __name__ == "__main__":
    main()
