"""one-time tokens: the mail that carries each link

A user's older tokens are spent when a newer link is handed to SMTP, no longer when it is issued.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_one_time_tokens_mail_id_mail_outbox"),
            "mail_outbox",
            ["mail_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_one_time_tokens_mail_id"), ["mail_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_one_time_tokens_mail_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_one_time_tokens_mail_id_mail_outbox"), type_="foreignkey"
        )
        batch_op.drop_column("mail_id")
