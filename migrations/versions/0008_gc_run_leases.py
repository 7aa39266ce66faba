"""gc run leases: a pass renews ``lease_until`` while it runs

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 14:05:00

A ``lading gc`` killed with SIGKILL left its ``gc_runs`` row "running"
forever. A pass now renews a lease on its row; any later pass (and the admin
API's status) marks rows whose lease ran out "abandoned".
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gc_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gc_runs", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
