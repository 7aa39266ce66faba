"""Shared fixtures: real SQLite and PostgreSQL databases, cheap argon2 parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth.models import AuthBase
from auth.passwords import Passwords
from auth.settings import Argon2Settings, AuthSettings

FAST_ARGON2 = Argon2Settings(time_cost=1, memory_kib=64, parallelism=1)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The auth tables, created on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "postgres":
        from support.postgres import fresh_database_url

        eng = create_engine(fresh_database_url())
    else:
        eng = create_engine(f"sqlite:///{tmp_path / 'auth.db'}")

        @event.listens_for(eng, "connect")
        def _fk_on(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

    AuthBase.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with sessionmaker(engine)() as s:
        yield s


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(FAST_ARGON2)


SettingsFactory = Callable[..., AuthSettings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Token-mode settings in a temp data dir; keyword arguments override fields."""

    def build(**overrides: object) -> AuthSettings:
        return _settings(tmp_path, **overrides)

    return build


def _settings(tmp_path: Path, **overrides: object) -> AuthSettings:
    base: dict[str, object] = {
        "mode": "token",
        "realm": "https://registry.example/token",
        "service": "registry.example",
        "issuer": "lading-test",
        "data_dir": tmp_path,
        "argon2": FAST_ARGON2,
    }
    base.update(overrides)
    return AuthSettings.model_validate(base)
