"""Alembic environment: runs against the connection or URL the caller configured."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, MetaData, create_engine, pool

from registry.db.models import Base

config = context.config


def _metadata() -> list[MetaData]:
    metadata = [Base.metadata]
    try:  # auth's tables join once that package defines them
        from auth.models import AuthBase  # type: ignore[import-not-found,unused-ignore]

        metadata.append(AuthBase.metadata)
    except ImportError:
        pass
    return metadata


target_metadata = _metadata()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
