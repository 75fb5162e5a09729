"""Credentials the server hands out: one-time tokens, refresh sessions, revoked access tokens.

Secrets are never stored: only their SHA-256 digests.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime
from idp.models.user import User


class OneTimeToken(db.Model):
    """An email-verification or password-reset token."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (Index("ix_one_time_tokens_user_purpose", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The outbox mail that carries the link; once it is handed to SMTP the user's older tokens
    # of this purpose are spent. Null once the finished mail is purged.
    mail_id: Mapped[int | None] = mapped_column(
        ForeignKey("mail_outbox.id", ondelete="SET NULL"), index=True
    )

    user: Mapped[User] = relationship()


class RefreshSession(db.Model):
    """A refresh-token family: one login, every token rotated from it shares the session."""

    __tablename__ = "refresh_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The `sid` claim of every access token minted in this session.
    public_id: Mapped[str] = mapped_column(String(43), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    scope: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # The browser sign-in it came from (authorization code flow); signing out there ends it.
    browser_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("browser_sessions.id", ondelete="SET NULL"), index=True
    )
    # The `aud` of its access tokens, space-separated; null: the server's own (IDP_AUDIENCE).
    audience: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship()


class RefreshToken(db.Model):
    """One refresh token of a session. Spent (used_at set) when rotated."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("refresh_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when a spent token got its one sibling pair within IDP_REFRESH_REUSE_GRACE.
    grace_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    session: Mapped[RefreshSession] = relationship()


class RevokedAccessToken(db.Model):
    """A denylisted access-token jti, kept until the token would have expired anyway."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
