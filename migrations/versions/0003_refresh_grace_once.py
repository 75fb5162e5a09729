"""refresh token: the reuse grace is used at most once

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:35:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("refresh_tokens", sa.Column("grace_used_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.drop_column("grace_used_at")
