"""Recognising a database that could not write because its disk is full."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from registry.domain.errors import STORAGE_FULL, RegistryError

# SQLite's primary result code for "database or disk is full".
_SQLITE_FULL = 13
# PostgreSQL's SQLSTATE disk_full (class 53, insufficient resources).
_POSTGRES_DISK_FULL = "53100"


def database_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) is the database running out of space.

    SQLAlchemy wraps driver errors (``.orig``) and code re-raises them (``raise ... from``),
    so that chain is searched; an error merely raised while handling one is not.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF == _SQLITE_FULL:
                return True
        if getattr(current, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None]
        pending.append(current.__cause__)
    return False


@contextmanager
def full_disk_refused() -> Iterator[None]:
    """Raise a write the database could not make for lack of space as STORAGE_FULL.

    The transaction was rolled back, so nothing changed and the client may retry.
    """
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        if not database_full(exc):
            raise
        raise RegistryError(
            STORAGE_FULL, f"{STORAGE_FULL.message}: the database cannot write"
        ) from exc
