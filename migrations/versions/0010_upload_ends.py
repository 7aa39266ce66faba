"""upload_ends: upload references that were completed or cancelled

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 23:40:00

POST no longer records a session row: the upload reference it answers with
stands for an empty session until a PATCH stores bytes (registry.domain.
upload_refs). Ending such a session (its blob recorded, a cancel, a wrong
digest) adds its reference here, in the same transaction where there is one,
so a reused reference gets BLOB_UPLOAD_UNKNOWN instead of a fresh session.
Rows go once ``expires_at`` (epoch seconds) has passed: the reference is
refused as too old by then.
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_ends",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_ends")),
    )
    op.create_index("ix_upload_ends_expires_at", "upload_ends", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_upload_ends_expires_at", table_name="upload_ends")
    op.drop_table("upload_ends")
