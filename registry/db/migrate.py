"""Schema migrations through Alembic, run programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

import migrations
from registry.db.engine import Database


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


# Replicas starting together must not migrate concurrently.
_PG_MIGRATION_LOCK = 0x1AD1_0001


def _sqlite_foreign_keys(conn: Connection, enabled: bool) -> None:
    # Outside any transaction (inside one SQLite ignores it); the raw connection
    # does not start one (the engine runs it in autocommit mode).
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}")


def _with_connection(db: Database, action: str, revision: str) -> None:
    config = alembic_config(db)
    sqlite = db.dialect == "sqlite"
    with db.writer_lock(), db.engine.connect() as conn:
        # SQLite alters a column by rebuilding its table; with foreign keys on,
        # dropping the old table would cascade-delete the rows referencing it.
        # So, as SQLite's documentation advises: off, then checked before commit.
        if sqlite:
            _sqlite_foreign_keys(conn, False)
        try:
            with conn.begin():
                if db.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                config.attributes["connection"] = conn
                if action == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, True)


def upgrade(db: Database, revision: str = "head") -> None:
    _with_connection(db, "upgrade", revision)


def downgrade(db: Database, revision: str) -> None:
    _with_connection(db, "downgrade", revision)


def current(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config_static()).get_current_head()


def alembic_config_static() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def is_up_to_date(db: Database) -> bool:
    return current(db) == head()
