from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gcenv import Env, database_url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def env(backend: str, tmp_path: Path) -> Iterator[Env]:
    created = Env.create(database_url(backend, tmp_path), tmp_path / "storage")
    yield created
    created.db.dispose()
