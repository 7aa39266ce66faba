"""online garbage collection: review queues filled by triggers, run history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 03:20:00

Triggers queue a review in the same transaction as every event that may make
a manifest or blob garbage (GitLab's design), so no code path can forget it.
Times are epoch seconds; workers add the grace delay when they pick reviews.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}
_MAX = {"sqlite": "max", "postgresql": "GREATEST"}

# INSERT ... SELECT needs a WHERE before ON CONFLICT on SQLite (parser ambiguity).
_MANIFEST_UPSERT = (
    "INSERT INTO gc_manifest_reviews (manifest_id, event_at, event) {select}"
    " ON CONFLICT (manifest_id) DO UPDATE SET"
    " event_at = {max}(gc_manifest_reviews.event_at, excluded.event_at), event = excluded.event"
)
_BLOB_UPSERT = (
    "INSERT INTO gc_blob_reviews (digest, event_at, event) {select}"
    " ON CONFLICT (digest) DO UPDATE SET"
    " event_at = {max}(gc_blob_reviews.event_at, excluded.event_at), event = excluded.event"
)

# (name, timing, event, table, condition on OLD/NEW or None, statements)
_TRIGGERS: list[tuple[str, str, str, str, str | None, list[str]]] = [
    ("gc_tag_deleted", "AFTER", "DELETE", "tags", None, [
        _MANIFEST_UPSERT.replace("{select}", "SELECT OLD.manifest_id, {now}, 'tag_delete' WHERE true"),
    ]),
    ("gc_tag_moved", "AFTER", "UPDATE OF manifest_id", "tags",
     "OLD.manifest_id <> NEW.manifest_id", [
        _MANIFEST_UPSERT.replace("{select}", "SELECT OLD.manifest_id, {now}, 'tag_move' WHERE true"),
    ]),
    ("gc_manifest_pushed", "AFTER", "INSERT", "manifests", None, [
        _MANIFEST_UPSERT.replace("{select}", "SELECT NEW.id, {now}, 'push' WHERE true"),
    ]),
    # BEFORE: the cascaded manifest_blobs/manifest_references rows still exist.
    ("gc_manifest_deleted", "BEFORE", "DELETE", "manifests", None, [
        _BLOB_UPSERT.replace(
            "{select}",
            "SELECT blob_digest, {now}, 'manifest_delete' FROM manifest_blobs"
            " WHERE manifest_id = OLD.id",
        ),
        _MANIFEST_UPSERT.replace(
            "{select}",
            "SELECT m.id, {now}, 'parent_delete' FROM manifest_references r"
            " JOIN manifests m ON m.digest = r.child_digest AND m.repository_id = OLD.repository_id"
            " WHERE r.parent_id = OLD.id",
        ),
        _MANIFEST_UPSERT.replace(
            "{select}",
            "SELECT id, {now}, 'subject_delete' FROM manifests"
            " WHERE repository_id = OLD.repository_id AND subject_digest = OLD.digest",
        ),
    ]),
    ("gc_blob_linked", "AFTER", "INSERT", "repository_blobs", None, [
        _BLOB_UPSERT.replace("{select}", "SELECT NEW.blob_digest, {now}, 'link' WHERE true"),
    ]),
    ("gc_blob_unlinked", "AFTER", "DELETE", "repository_blobs", None, [
        _BLOB_UPSERT.replace("{select}", "SELECT OLD.blob_digest, {now}, 'unlink' WHERE true"),
    ]),
]


def _create_triggers(dialect: str) -> None:
    for name, timing, event, table, condition, statements in _TRIGGERS:
        body = [s.format(now=_NOW[dialect], max=_MAX[dialect]) for s in statements]
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


def _drop_triggers(dialect: str) -> None:
    for name, _timing, _event, table, _condition, _statements in _TRIGGERS:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def upgrade() -> None:
    op.create_table('gc_blob_reviews',
    sa.Column('digest', sa.String(length=200), nullable=False),
    sa.Column('event_at', sa.Float(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_gc_blob_reviews'))
    )
    op.create_index('ix_gc_blob_reviews_event_at', 'gc_blob_reviews', ['event_at'], unique=False)
    op.create_table('gc_manifest_reviews',
    sa.Column('manifest_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('event_at', sa.Float(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('manifest_id', name=op.f('pk_gc_manifest_reviews'))
    )
    op.create_index('ix_gc_manifest_reviews_event_at', 'gc_manifest_reviews', ['event_at'], unique=False)
    op.create_table('gc_storage_deletions',
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('queued_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('storage_key', name=op.f('pk_gc_storage_deletions'))
    )
    op.create_table('gc_orphans',
    sa.Column('key', sa.String(length=1100), nullable=False),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_gc_orphans'))
    )
    op.create_table('gc_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('manifests_deleted', sa.Integer(), nullable=False),
    sa.Column('blobs_deleted', sa.Integer(), nullable=False),
    sa.Column('links_deleted', sa.Integer(), nullable=False),
    sa.Column('uploads_deleted', sa.Integer(), nullable=False),
    sa.Column('objects_freed', sa.Integer(), nullable=False),
    sa.Column('bytes_freed', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gc_runs'))
    )
    op.create_index('ix_gc_runs_started_at', 'gc_runs', ['started_at'], unique=False)
    dialect = op.get_bind().dialect.name
    _create_triggers(dialect)
    # Everything already stored gets one review, so pre-GC garbage is found too.
    now, greatest = _NOW[dialect], _MAX[dialect]
    op.execute(f"INSERT INTO gc_manifest_reviews (manifest_id, event_at, event) SELECT id, {now}, 'migrate' FROM manifests")
    op.execute(f"INSERT INTO gc_blob_reviews (digest, event_at, event) SELECT digest, {now}, 'migrate' FROM blobs")


def downgrade() -> None:
    _drop_triggers(op.get_bind().dialect.name)
    op.drop_index('ix_gc_runs_started_at', table_name='gc_runs')
    op.drop_table('gc_runs')
    op.drop_table('gc_orphans')
    op.drop_table('gc_storage_deletions')
    op.drop_index('ix_gc_manifest_reviews_event_at', table_name='gc_manifest_reviews')
    op.drop_table('gc_manifest_reviews')
    op.drop_index('ix_gc_blob_reviews_event_at', table_name='gc_blob_reviews')
    op.drop_table('gc_blob_reviews')
