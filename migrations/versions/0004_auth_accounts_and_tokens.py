"""auth accounts and tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 03:26:21.861741
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('auth_login_failures',
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('username', 'client_ip')
    )
    op.create_table('auth_permission_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject_type', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('repository_pattern', sa.String(length=255), nullable=False),
    sa.Column('actions', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject_type', 'subject_id', 'repository_pattern')
    )
    with op.batch_alter_table('auth_permission_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_permission_rules_subject_id'), ['subject_id'], unique=False)

    op.create_table('auth_public_repositories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pattern', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pattern')
    )
    op.create_table('auth_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('auth_group_members',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['auth_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['auth_users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'user_id')
    )
    with op.batch_alter_table('auth_group_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_group_members_user_id'), ['user_id'], unique=False)

    op.create_table('auth_robot_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('secret_digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['auth_users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner_id', 'name'),
    sa.UniqueConstraint('secret_digest')
    )
    op.create_table('auth_refresh_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('secret_digest', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('robot_id', sa.Integer(), nullable=True),
    sa.Column('service', sa.String(length=255), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['robot_id'], ['auth_robot_tokens.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['auth_users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_digest')
    )
    with op.batch_alter_table('auth_refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_refresh_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('auth_robot_scopes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('repository_pattern', sa.String(length=255), nullable=False),
    sa.Column('actions', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['token_id'], ['auth_robot_tokens.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auth_robot_scopes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_robot_scopes_token_id'), ['token_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('auth_robot_scopes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_robot_scopes_token_id'))

    op.drop_table('auth_robot_scopes')
    with op.batch_alter_table('auth_refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_refresh_tokens_user_id'))

    op.drop_table('auth_refresh_tokens')
    op.drop_table('auth_robot_tokens')
    with op.batch_alter_table('auth_group_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_group_members_user_id'))

    op.drop_table('auth_group_members')
    op.drop_table('auth_users')
    op.drop_table('auth_public_repositories')
    with op.batch_alter_table('auth_permission_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_permission_rules_subject_id'))

    op.drop_table('auth_permission_rules')
    op.drop_table('auth_login_failures')
    op.drop_table('auth_groups')
