"""A test's lading database that refuses writes for real, through a trigger, as a full
disk would (SQLite: "database or disk is full"; PostgreSQL: SQLSTATE 53100 disk_full)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import psycopg

from support.postgres import wants_postgres
from support.server import RegistryServer

_SQLITE_RAISE = "SELECT RAISE(ABORT, 'database or disk is full')"
_PG_FUNCTION = (
    "CREATE FUNCTION refuse_write() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
)


def run_sql(server: RegistryServer, statements: list[str]) -> None:
    """Run ``statements`` on the server's own database, whichever the test pass uses."""
    if wants_postgres():
        url = (server.data_dir / "test-database-url").read_text().strip()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())
        return
    with contextlib.closing(sqlite3.connect(server.data_dir / "lading.db", timeout=30)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()


@contextlib.contextmanager
def refusing(server: RegistryServer, event: str, table: str, when: str = "") -> Iterator[None]:
    """The database refuses ``event`` on ``table`` (where ``when`` holds)."""
    if wants_postgres():
        condition = f" WHEN ({when})" if when else ""
        create = (
            f"CREATE TRIGGER refuse BEFORE {event} ON {table} FOR EACH ROW{condition}"
            " EXECUTE FUNCTION refuse_write()"
        )
        run_sql(server, [_PG_FUNCTION, create])
    else:
        condition = f" WHEN {when}" if when else ""
        create = f"CREATE TRIGGER refuse BEFORE {event} ON {table}{condition}"
        run_sql(server, [f"{create} BEGIN {_SQLITE_RAISE}; END"])
    try:
        yield
    finally:
        if wants_postgres():
            run_sql(server, [f"DROP TRIGGER refuse ON {table}", "DROP FUNCTION refuse_write()"])
        else:
            run_sql(server, ["DROP TRIGGER refuse"])
