"""What a browser holds at idp: a sign-in (the session its cookie points at)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime
from idp.models.user import User


class BrowserSession(db.Model):
    """One sign-in on the hosted pages; single sign-on lasts as long as it lives."""

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The `sid` claim of the ID tokens issued in this session (safe to show a relying app).
    public_id: Mapped[str] = mapped_column(String(43), unique=True, nullable=False)
    # SHA-256 of the cookie's random value: a database dump opens no browser session.
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # When the user last typed their password here: the ID token's auth_time.
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    user_agent: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_reason: Mapped[str | None] = mapped_column(String(32))

    user: Mapped[User] = relationship()
