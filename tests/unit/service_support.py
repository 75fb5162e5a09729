"""Helpers for the service tests: accounts made straight in the database, a fixed clock."""

from __future__ import annotations

import uuid
from datetime import datetime

from idp.clock import utcnow
from idp.extensions import db
from idp.models import User
from tests.flows import unique_email

# One instant per run, to the second (token times are whole seconds); tests move it by hand.
NOW: datetime = utcnow().replace(microsecond=0)


def add_user(email: str | None = None, *, active: bool = True) -> User:
    """Stage and flush an account, verified and active unless told otherwise."""
    email = email or unique_email()
    user = User(
        public_id=str(uuid.uuid4()),
        email=email,
        email_canonical=email.casefold(),
        password_hash="not-a-hash",
        first_name="Ada",
        last_name="Lovelace",
        is_active=active,
        email_verified_at=NOW if active else None,
        created_at=NOW,
        updated_at=NOW,
    )
    db.session.add(user)
    db.session.flush()
    return user
