from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[object]:
    from s3servers import ToolMissing, start_moto
    from support.tools import unavailable

    try:
        server = start_moto()
    except ToolMissing as exc:
        unavailable(f"moto_server is not installed: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["filesystem", "s3"])
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """``LADING_*`` settings for the storage a test server uses (S3: moto)."""
    if request.param == "filesystem":
        return {"LADING_STORAGE": "filesystem"}
    server: Any = request.getfixturevalue("moto_server")
    bucket = f"gc-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return {
        "LADING_STORAGE": "s3",
        "LADING_S3_BUCKET": bucket,
        "LADING_S3_ENDPOINT_URL": server.endpoint_url,
        "LADING_S3_ACCESS_KEY": server.access_key,
        "LADING_S3_SECRET_KEY": server.secret_key,
        "LADING_S3_REGION": server.region,
    }
