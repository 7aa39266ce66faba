"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 03:01:22.082743
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('digest', sa.String(length=200), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_blobs'))
    )
    op.create_table('repositories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_push_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repositories')),
    sa.UniqueConstraint('name', name=op.f('uq_repositories_name'))
    )
    op.create_table('upload_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('repository_name', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('driver_state', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('hash_state', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_sessions'))
    )
    with op.batch_alter_table('upload_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_upload_sessions_updated_at', ['updated_at'], unique=False)

    op.create_table('manifests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=200), nullable=False),
    sa.Column('media_type', sa.String(length=255), nullable=False),
    sa.Column('artifact_type', sa.String(length=255), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('storage_key', sa.String(length=1024), nullable=False),
    sa.Column('config_digest', sa.String(length=200), nullable=True),
    sa.Column('subject_digest', sa.String(length=200), nullable=True),
    sa.Column('annotations', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_pulled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], name=op.f('fk_manifests_repository_id_repositories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manifests')),
    sa.UniqueConstraint('repository_id', 'digest', name='uq_manifests_repository_digest')
    )
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.create_index('ix_manifests_digest', ['digest'], unique=False)
        batch_op.create_index('ix_manifests_repository_subject', ['repository_id', 'subject_digest'], unique=False)

    op.create_table('repository_blobs',
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('blob_digest', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['blob_digest'], ['blobs.digest'], name=op.f('fk_repository_blobs_blob_digest_blobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], name=op.f('fk_repository_blobs_repository_id_repositories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('repository_id', 'blob_digest', name=op.f('pk_repository_blobs'))
    )
    with op.batch_alter_table('repository_blobs', schema=None) as batch_op:
        batch_op.create_index('ix_repository_blobs_blob_digest', ['blob_digest'], unique=False)

    op.create_table('manifest_blobs',
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('blob_digest', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['blob_digest'], ['blobs.digest'], name=op.f('fk_manifest_blobs_blob_digest_blobs'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], name=op.f('fk_manifest_blobs_manifest_id_manifests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('manifest_id', 'blob_digest', name=op.f('pk_manifest_blobs'))
    )
    with op.batch_alter_table('manifest_blobs', schema=None) as batch_op:
        batch_op.create_index('ix_manifest_blobs_blob_digest', ['blob_digest'], unique=False)

    op.create_table('manifest_references',
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('child_digest', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['manifests.id'], name=op.f('fk_manifest_references_parent_id_manifests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('parent_id', 'child_digest', name=op.f('pk_manifest_references'))
    )
    with op.batch_alter_table('manifest_references', schema=None) as batch_op:
        batch_op.create_index('ix_manifest_references_child_digest', ['child_digest'], unique=False)

    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], name=op.f('fk_tags_manifest_id_manifests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], name=op.f('fk_tags_repository_id_repositories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('repository_id', 'name', name='uq_tags_repository_name')
    )
    with op.batch_alter_table('tags', schema=None) as batch_op:
        batch_op.create_index('ix_tags_manifest_id', ['manifest_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tags', schema=None) as batch_op:
        batch_op.drop_index('ix_tags_manifest_id')

    op.drop_table('tags')
    with op.batch_alter_table('manifest_references', schema=None) as batch_op:
        batch_op.drop_index('ix_manifest_references_child_digest')

    op.drop_table('manifest_references')
    with op.batch_alter_table('manifest_blobs', schema=None) as batch_op:
        batch_op.drop_index('ix_manifest_blobs_blob_digest')

    op.drop_table('manifest_blobs')
    with op.batch_alter_table('repository_blobs', schema=None) as batch_op:
        batch_op.drop_index('ix_repository_blobs_blob_digest')

    op.drop_table('repository_blobs')
    with op.batch_alter_table('manifests', schema=None) as batch_op:
        batch_op.drop_index('ix_manifests_repository_subject')
        batch_op.drop_index('ix_manifests_digest')

    op.drop_table('manifests')
    with op.batch_alter_table('upload_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_upload_sessions_updated_at')

    op.drop_table('upload_sessions')
    op.drop_table('repositories')
    op.drop_table('blobs')
