"""online GC: append-only review queues (no upserts, so triggers never wait)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 07:45:00

Migration 0002's triggers upserted one review row per object. On PostgreSQL
an upsert waits for any transaction holding that row, and a manifest,
tag or repository delete upserts many rows in scan order, so deletes,
pushes and collectors deadlocked (40P01). Now every trigger appends an
event row (no unique key, so an insert never waits on another
transaction); a collector takes events in batches with
``FOR UPDATE SKIP LOCKED`` and reviews an object only once its newest event
is past the grace delay.
"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}
_MANIFEST = "INSERT INTO gc_manifest_reviews (manifest_id, event_at, event) "
_BLOB = "INSERT INTO gc_blob_reviews (digest, event_at, event) "

# (name, timing, event, table, condition on OLD/NEW or None, statements)
_TRIGGERS: list[tuple[str, str, str, str, str | None, list[str]]] = [
    ("gc_tag_deleted", "AFTER", "DELETE", "tags", None, [
        _MANIFEST + "VALUES (OLD.manifest_id, {now}, 'tag_delete')",
    ]),
    ("gc_tag_moved", "AFTER", "UPDATE OF manifest_id", "tags",
     "OLD.manifest_id <> NEW.manifest_id", [
        _MANIFEST + "VALUES (OLD.manifest_id, {now}, 'tag_move')",
    ]),
    ("gc_manifest_pushed", "AFTER", "INSERT", "manifests", None, [
        _MANIFEST + "VALUES (NEW.id, {now}, 'push')",
    ]),
    # BEFORE: the cascaded manifest_blobs/manifest_references rows still exist.
    ("gc_manifest_deleted", "BEFORE", "DELETE", "manifests", None, [
        _BLOB + "SELECT blob_digest, {now}, 'manifest_delete' FROM manifest_blobs"
        " WHERE manifest_id = OLD.id",
        _MANIFEST + "SELECT m.id, {now}, 'parent_delete' FROM manifest_references r"
        " JOIN manifests m ON m.digest = r.child_digest AND m.repository_id = OLD.repository_id"
        " WHERE r.parent_id = OLD.id",
        _MANIFEST + "SELECT id, {now}, 'subject_delete' FROM manifests"
        " WHERE repository_id = OLD.repository_id AND subject_digest = OLD.digest",
    ]),
    ("gc_blob_linked", "AFTER", "INSERT", "repository_blobs", None, [
        _BLOB + "VALUES (NEW.blob_digest, {now}, 'link')",
    ]),
    ("gc_blob_unlinked", "AFTER", "DELETE", "repository_blobs", None, [
        _BLOB + "VALUES (OLD.blob_digest, {now}, 'unlink')",
    ]),
]

# name -> (key column, its type)
_QUEUES = {
    "gc_manifest_reviews": ("manifest_id", sa.Integer()),
    "gc_blob_reviews": ("digest", sa.String(length=200)),
}


def _migration_0002():  # type: ignore[no-untyped-def]
    path = Path(__file__).with_name("0002_online_gc.py")
    spec = importlib.util.spec_from_file_location("lading_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _create_triggers(dialect: str, only_table: str | None = None) -> None:
    # only_table: migration 0009 recreates the triggers of the table it rebuilds.
    for name, timing, event, table, condition, statements in _TRIGGERS:
        if only_table is not None and table != only_table:
            continue
        body = [s.format(now=_NOW[dialect]) for s in statements]
        if dialect == "sqlite":
            when = f" WHEN {condition}" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW{when}"
                f" BEGIN {'; '.join(body)}; END"
            )
        else:
            result = "OLD" if timing == "BEFORE" else "NULL"
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN {'; '.join(body)}; RETURN {result}; END $$"
            )
            when = f" WHEN ({condition})" if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW{when}"
                f" EXECUTE FUNCTION {name}()"
            )


def _event_id() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    # BIGINT on PostgreSQL (events add up); INTEGER PRIMARY KEY is SQLite's rowid.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _migration_0002()._drop_triggers(dialect)
    for table, (key, key_type) in _QUEUES.items():
        op.execute(f"CREATE TABLE {table}_old AS SELECT {key}, event_at, event FROM {table}")
        op.drop_index(f'ix_{table}_event_at', table_name=table)
        op.drop_table(table)
        op.create_table(table,
        sa.Column('id', _event_id(), autoincrement=True, nullable=False),
        sa.Column(key, key_type, nullable=False),
        sa.Column('event_at', sa.Float(), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}'))
        )
        op.create_index(f'ix_{table}_event_at', table, ['event_at'], unique=False)
        op.create_index(f'ix_{table}_{key}', table, [key], unique=False)
        op.execute(
            f"INSERT INTO {table} ({key}, event_at, event)"
            f" SELECT {key}, event_at, event FROM {table}_old"
        )
        op.execute(f"DROP TABLE {table}_old")
    _create_triggers(dialect)


def _drop_triggers(dialect: str, only_table: str | None = None) -> None:
    for name, _timing, _event, table, _condition, _statements in _TRIGGERS:
        if only_table is not None and table != only_table:
            continue
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_triggers(dialect)
    for table, (key, key_type) in _QUEUES.items():
        # One review per object again, at its newest event.
        op.execute(
            f"CREATE TABLE {table}_old AS SELECT {key}, max(event_at) AS event_at"
            f" FROM {table} GROUP BY {key}"
        )
        op.drop_index(f'ix_{table}_{key}', table_name=table)
        op.drop_index(f'ix_{table}_event_at', table_name=table)
        op.drop_table(table)
        op.create_table(table,
        sa.Column(key, key_type, autoincrement=False, nullable=False),
        sa.Column('event_at', sa.Float(), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint(key, name=op.f(f'pk_{table}'))
        )
        op.create_index(f'ix_{table}_event_at', table, ['event_at'], unique=False)
        op.execute(
            f"INSERT INTO {table} ({key}, event_at, event)"
            f" SELECT {key}, event_at, 'migrate' FROM {table}_old"
        )
        op.execute(f"DROP TABLE {table}_old")
    _migration_0002()._create_triggers(dialect)
