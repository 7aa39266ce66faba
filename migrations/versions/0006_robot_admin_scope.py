"""robot admin scope: a robot token may use the admin API

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 07:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('auth_robot_tokens', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('admin', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('auth_robot_tokens', schema=None) as batch_op:
        batch_op.drop_column('admin')
