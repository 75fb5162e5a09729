"""openid provider: redirect clients, browser sessions, authorization codes, consents

Clients gain what the authorization code flow needs (public or confidential, redirect URIs,
first-party); a browser session is the sign-in a cookie points at; a code is a single-use grant
bound to its client, redirect URI, PKCE challenge, nonce and browser session; a consent is a
user's remembered approval of a client's scopes. A user can be disabled by an admin. A client
names the audiences (resource servers) its tokens are for, and whether it may introspect.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 17:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.alter_column(
            "client_secret_hash", existing_type=sa.String(length=64), nullable=True
        )
        batch_op.add_column(
            sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("first_party", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("redirect_uris", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "post_logout_redirect_uris", sa.Text(), nullable=False, server_default=""
            )
        )
        # Empty: the server's own audience (IDP_AUDIENCE), what every token carried before.
        batch_op.add_column(sa.Column("audiences", sa.Text(), nullable=False, server_default=""))
        # Clients registered before this revision could introspect; they still may.
        batch_op.add_column(
            sa.Column("can_introspect", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(), nullable=True))

    op.create_table(
        "browser_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=43), nullable=False),
        sa.Column("cookie_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("auth_time", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_browser_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_sessions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_browser_sessions_public_id")),
        sa.UniqueConstraint("cookie_hash", name=op.f("uq_browser_sessions_cookie_hash")),
    )
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_browser_sessions_user_id"), ["user_id"])

    with op.batch_alter_table("refresh_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("browser_session_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audience", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_refresh_sessions_browser_session_id_browser_sessions"),
            "browser_sessions",
            ["browser_session_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_refresh_sessions_browser_session_id"), ["browser_session_id"]
        )

    op.create_table(
        "authorization_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("browser_session_id", sa.Integer(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(length=500), nullable=False),
        sa.Column("nonce", sa.String(length=255), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("auth_time", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("refresh_session_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_authorization_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["browser_session_id"], ["browser_sessions.id"],
            name=op.f("fk_authorization_codes_browser_session_id_browser_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["refresh_session_id"], ["refresh_sessions.id"],
            name=op.f("fk_authorization_codes_refresh_session_id_refresh_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_authorization_codes_code_hash")),
    )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authorization_codes_expires_at"), ["expires_at"])

    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=500), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_consents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("user_id", "client_id", name=op.f("uq_consents_user_id")),
    )


def downgrade():
    op.drop_table("consents")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_codes_expires_at"))
    op.drop_table("authorization_codes")
    with op.batch_alter_table("refresh_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_sessions_browser_session_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_refresh_sessions_browser_session_id_browser_sessions"),
            type_="foreignkey",
        )
        batch_op.drop_column("audience")
        batch_op.drop_column("browser_session_id")
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_browser_sessions_user_id"))
    op.drop_table("browser_sessions")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("can_introspect")
        batch_op.drop_column("audiences")
        batch_op.drop_column("post_logout_redirect_uris")
        batch_op.drop_column("redirect_uris")
        batch_op.drop_column("first_party")
        batch_op.drop_column("is_public")
        batch_op.alter_column(
            "client_secret_hash", existing_type=sa.String(length=64), nullable=False
        )
