"""OAuth clients registered by an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime


class OAuthClient(db.Model):
    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # SHA-256 of a 256-bit random secret: a high-entropy secret needs no password KDF.
    client_secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Space-separated lists, as OAuth writes them.
    grant_types: Mapped[str] = mapped_column(String(200), nullable=False)
    scope: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # Deleting marks: tokens already issued to the client stop verifying, the id is never reused.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
