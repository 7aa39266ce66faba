"""manifest payloads in the database: ``manifests.payload``, ``storage_key`` nullable

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 02:15:00

A manifest push wrote its bytes to storage (a file fsync and a directory
fsync) before its row; now the exact bytes go into the row, in the
transaction that records its references, so one (group-)committed database
write makes the push durable. Rows pushed before keep their ``storage_key``
and are read from storage; a CHECK keeps exactly one of the two set.

On SQLite, altering a column rebuilds the table, which drops its triggers
(migration 0007's GC review triggers on ``manifests``): they are recreated
here, on upgrade and downgrade. ``registry.db.migrate`` turns SQLite foreign
key enforcement off for the rebuild (dropping the old table would otherwise
cascade-delete tags and references) and checks the keys before commit.

Downgrade refuses while any manifest is held only in the database: revision
0008 cannot read such rows, and migrations have no storage to write them to.
Delete those manifests (or restore a backup) first.
"""

import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CHECK = "ck_manifests_one_source"  # the models' "one_source" under the naming convention
_ONE_SOURCE = "(payload IS NULL) <> (storage_key IS NULL)"


def _migration_0007():  # type: ignore[no-untyped-def]
    path = Path(__file__).with_name("0007_gc_event_queues.py")
    spec = importlib.util.spec_from_file_location("lading_migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    triggers = _migration_0007()
    if dialect == "sqlite":
        triggers._drop_triggers(dialect, only_table="manifests")
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.LargeBinary(), nullable=True))
        batch_op.alter_column("storage_key", existing_type=sa.String(length=1024), nullable=True)
        batch_op.create_check_constraint(op.f(_CHECK), _ONE_SOURCE)
    if dialect == "sqlite":
        triggers._create_triggers(dialect, only_table="manifests")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    held = (
        op.get_bind()
        .exec_driver_sql("SELECT count(*) FROM manifests WHERE storage_key IS NULL")
        .scalar_one()
    )
    if held:
        raise RuntimeError(
            f"cannot downgrade below 0009: {held} manifest(s) are stored only in the"
            " database (manifests.payload) and revision 0008 needs their bytes in"
            " storage; stop the registry and run `lading migrate store-manifests` first"
        )
    triggers = _migration_0007()
    if dialect == "sqlite":
        triggers._drop_triggers(dialect, only_table="manifests")
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_CHECK), type_="check")
        batch_op.alter_column("storage_key", existing_type=sa.String(length=1024), nullable=False)
        batch_op.drop_column("payload")
    if dialect == "sqlite":
        triggers._create_triggers(dialect, only_table="manifests")
