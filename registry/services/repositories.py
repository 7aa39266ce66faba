"""Repository rows: found by name, created on first push."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from registry.db.models import Repository, utcnow
from registry.db.raw import RawTx
from registry.domain.errors import UNAVAILABLE, RegistryError

# Session and Connection both execute Core statements; hot paths use Connection.
Executor = Session | Connection


def dialect_name(executor: Executor) -> str:
    if isinstance(executor, Connection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


def insert_for(executor: Executor) -> Any:
    """The dialect's INSERT construct (both support ON CONFLICT)."""
    return pg_insert if dialect_name(executor) == "postgresql" else sqlite_insert


def find_repository_id(executor: Executor, name: str) -> int | None:
    return executor.scalar(select(Repository.id).where(Repository.name == name))


def ensure_repository(executor: Executor, name: str) -> int:
    """Return the id of ``name``, creating the row if needed (race-safe).

    Locks the row as :func:`ensure_repository_raw` does, and retries the same way.
    """
    find = select(Repository.id).where(Repository.name == name)
    if dialect_name(executor) == "postgresql":
        find = find.with_for_update(read=True, key_share=True)
    create = (
        insert_for(executor)(Repository)
        .values(name=name, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return _find_or_create(name, lambda: executor.scalar(find), lambda: executor.execute(create))


# Creating a repository races deletes of the same name; each lost round is retried.
_CREATE_ATTEMPTS = 5


def _find_or_create(name: str, find: Callable[[], Any], create: Callable[[], object]) -> int:
    """The id ``find`` returns, after ``create`` (an INSERT ... ON CONFLICT DO NOTHING)
    when there is none yet."""
    found = find()
    for _ in range(_CREATE_ATTEMPTS):
        if found is not None:
            return int(found)
        # A concurrent delete can remove the row another push just inserted between
        # our conflicting INSERT and the next SELECT (seen on PostgreSQL): insert again.
        create()
        found = find()
    if found is not None:
        return int(found)
    raise RegistryError(
        UNAVAILABLE, f"repository {name!r} kept being deleted while it was created; retry"
    )


def ensure_repository_raw(tx: RawTx, name: str, now: Any) -> int:
    """``ensure_repository`` inside a raw transaction.

    On PostgreSQL the row is held FOR KEY SHARE until commit, taken first: a
    repository delete (which locks the row first too) then either waits for us or
    has finished, so rows we add never point at a deleted repository.
    """
    find = "SELECT id FROM repositories WHERE name = :name"
    if tx.is_postgres:
        find += " FOR KEY SHARE"

    def found() -> Any:
        row = tx.one(find, {"name": name})
        return None if row is None else row[0]

    return _find_or_create(
        name,
        found,
        lambda: tx.run(
            "INSERT INTO repositories (name, created_at) VALUES (:name, :now)"
            " ON CONFLICT (name) DO NOTHING",
            {"name": name, "now": now},
        ),
    )
