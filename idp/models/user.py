"""The user store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Opaque and non-sequential: it is the `sub` every relying app sees.
    public_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    # As the user typed it, after email-validator's normalisation; shown and mailed to.
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    # Case- and compatibility-folded form: the uniqueness key.
    email_canonical: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    first_name: Mapped[str] = mapped_column(String(150), nullable=False)
    last_name: Mapped[str] = mapped_column(String(150), nullable=False)
    company_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Access tokens issued before this instant are refused (password reset ends every session).
    sessions_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set by an admin: the account cannot sign in and none of its tokens or sessions work.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    def __repr__(self) -> str:
        return f"<User {self.public_id}>"
