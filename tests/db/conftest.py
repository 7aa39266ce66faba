from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from support.postgres import fresh_database_url

        return fresh_database_url()
    return f"sqlite:///{tmp_path / 'lading.db'}"
