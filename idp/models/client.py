"""OAuth clients registered by an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime


class OAuthClient(db.Model):
    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # SHA-256 of a 256-bit random secret: a high-entropy secret needs no password KDF.
    # Null for a public client (a browser or native app holds no secret; PKCE binds its codes).
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    is_public: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # An admin's own application: its users are not asked to consent.
    first_party: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Space-separated lists, as OAuth writes them.
    grant_types: Mapped[str] = mapped_column(String(200), nullable=False)
    scope: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    # Exact URIs, space-separated (a URI holds no space): matched whole, never by prefix.
    redirect_uris: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    post_logout_redirect_uris: Mapped[str] = mapped_column(
        Text, nullable=False, default="", server_default=""
    )
    # The resource servers its tokens are for (the `aud`), space-separated; empty: IDP_AUDIENCE.
    audiences: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # A resource server that may introspect tokens meant for its audiences (RFC 7662 4).
    can_introspect: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=true()
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # Deleting marks: tokens already issued to the client stop verifying, the id is never reused.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
