"""Repository rows: found by name, created on first push."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from registry.db.models import Repository, utcnow


def find_repository_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Repository.id).where(Repository.name == name))


def ensure_repository(session: Session, name: str) -> int:
    """Return the id of ``name``, creating the row if needed (race-safe)."""
    found = find_repository_id(session, name)
    if found is not None:
        return found
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(Repository)
        .values(name=name, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    repo_id = find_repository_id(session, name)
    assert repo_id is not None
    return repo_id
