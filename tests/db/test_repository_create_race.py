"""PostgreSQL: creating a repository row survives a concurrent push and delete of the
same name between its conflicting INSERT and the SELECT that follows.

Another connection inserts the row (a concurrent push) right after our first look found
none, and deletes it (a concurrent repository delete) right after our INSERT ... ON
CONFLICT DO NOTHING did nothing; SQLAlchemy's statement events time these real
transactions. On SQLite writers are serialized, so the race cannot happen there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from support.postgres import fresh_database_url

from registry.db import migrate
from registry.db.engine import Database
from registry.domain.errors import UNAVAILABLE, RegistryError
from registry.services.repositories import ensure_repository

NAME = "race/app"


class ConcurrentPushAndDelete:
    """Inserts NAME after each look that found nothing, deletes it after each INSERT,
    for ``rounds`` rounds; counts our INSERTs."""

    def __init__(self, url: str, rounds: int) -> None:
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.other = psycopg.connect(dsn, autocommit=True)
        self.rounds = rounds
        self.inserts = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO repositories"):
            self.inserts += 1
            if self.rounds > 0:
                self.rounds -= 1
                self.other.execute("DELETE FROM repositories WHERE name = %s", (NAME,))
        elif statement.startswith("SELECT repositories.id") and self.rounds > 0:
            self.other.execute(
                "INSERT INTO repositories (name, created_at) VALUES (%s, now())", (NAME,)
            )


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database(fresh_database_url())
    migrate.upgrade(database)
    yield database
    database.dispose()


def _race(db: Database, rounds: int) -> ConcurrentPushAndDelete:
    race = ConcurrentPushAndDelete(db.engine.url.render_as_string(hide_password=False), rounds)
    event.listen(db.engine, "after_cursor_execute", race)
    return race


def test_orm_create_retries_when_the_row_vanishes(db: Database) -> None:
    race = _race(db, rounds=2)
    try:
        with db.write() as session:
            repo_id = ensure_repository(session, NAME)
    finally:
        event.remove(db.engine, "after_cursor_execute", race)
        race.other.close()
    assert race.inserts == 3  # two rounds lost to the delete, the third one created it
    assert db.fetch_all("SELECT id FROM repositories WHERE name = :n", {"n": NAME}) == [(repo_id,)]


def test_orm_create_gives_up_with_a_clear_error(db: Database) -> None:
    race = _race(db, rounds=1_000)
    try:
        with pytest.raises(RegistryError) as raised, db.write() as session:
            ensure_repository(session, NAME)
    finally:
        event.remove(db.engine, "after_cursor_execute", race)
        race.other.close()
    assert raised.value.code == UNAVAILABLE
    assert race.inserts == 5  # _CREATE_ATTEMPTS
