import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from idp import create_app
from idp.database import bind_migrations
from idp.extensions import db
from idp.services.registry import get_services
from tests.conftest import new_database


def test_migrations_build_exactly_the_models(app):
    # base_settings ran `flask db upgrade` on an empty database of this run's backend.
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


# The users table as revision 0005 left it (only what a row needs), not as the models say now.
USERS = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("public_id", sa.String()),
    sa.column("email", sa.String()),
    sa.column("email_canonical", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("first_name", sa.String()),
    sa.column("last_name", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("created_at", sa.DateTime()),
    sa.column("updated_at", sa.DateTime()),
)
WHEN = datetime(2026, 12, 1)


@pytest.fixture
def migrated_app(base_settings: dict[str, Any], tmp_path: Path) -> Iterator[Flask]:
    """An app over a database of its own, which each test migrates where it needs it."""
    databases = new_database(tmp_path)
    app = create_app({**base_settings, "IDP_DATABASE_URL": next(databases)})
    bind_migrations(app)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        next(databases, None)  # drops a PostgreSQL database


def migrate(app: Flask, direction: str, revision: str) -> None:
    """Run Alembic as `flask db upgrade|downgrade` does, its errors unconverted."""
    with app.app_context():
        getattr(command, direction)(app.extensions["migrate"].migrate.get_config(), revision)


def add_users(app: Flask, *users: tuple[str, str]) -> list[int]:
    """Insert (email, email_canonical) rows as they were written; return their ids."""
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(
            sa.insert(USERS),
            [
                {
                    "public_id": str(uuid.uuid4()),
                    "email": email,
                    "email_canonical": email_canonical,
                    "password_hash": "not-a-hash",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "is_active": True,
                    "created_at": WHEN,
                    "updated_at": WHEN,
                }
                for email, email_canonical in users
            ],
        )
        emails = [email for email, _ in users]
        rows = connection.execute(sa.select(USERS.c.email, USERS.c.id))
        ids = {email: user_id for email, user_id in rows}
    return [ids[email] for email in emails]


def keys(app: Flask) -> dict[str, str]:
    with app.app_context(), db.engine.connect() as connection:
        return dict(connection.execute(sa.select(USERS.c.email, USERS.c.email_canonical)).all())


def revision_of(app: Flask) -> str:
    with app.app_context(), db.engine.connect() as connection:
        return connection.scalar(sa.text("SELECT version_num FROM alembic_version"))


# email, its key before 0006 (NFKC + casefold of it all), its key from 0006 on.
REKEYED = [
    ("ada@straße.de", "ada@strasse.de", "ada@straße.de"),
    ("bob@σίσυφος.gr", "bob@σίσυφοσ.gr", "bob@σίσυφος.gr"),
    ("Carol@ΣΊΣΥΦΟΣ.gr", "carol@σίσυφοσ.gr", "carol@σίσυφοσ.gr"),  # unchanged: no final sigma
    ("dan@bücher.de", "dan@bücher.de", "dan@bücher.de"),
    ("Erin@Example.com", "erin@example.com", "erin@example.com"),
]


def test_0006_rekeys_addresses_at_non_ascii_domains_and_0005_restores_the_old_keys(
    migrated_app,
):
    migrate(migrated_app, "upgrade", "0005")
    # More rows than a batch ahead of the ones that change: the reading is paged.
    add_users(migrated_app, *((f"filler{n}@example.com",) * 2 for n in range(1050)))
    add_users(migrated_app, *((email, old) for email, old, _ in REKEYED))
    migrate(migrated_app, "upgrade", "0006")
    stored = keys(migrated_app)
    assert {email: stored[email] for email, _, _ in REKEYED} == {e: new for e, _, new in REKEYED}
    assert stored["filler1049@example.com"] == "filler1049@example.com"
    with migrated_app.app_context():
        accounts = get_services().accounts
        assert accounts.find_by_email("ADA@STRAẞE.DE").email == "ada@straße.de"
        assert accounts.find_by_email("ada@strasse.de") is None
        assert accounts.find_by_email("Bob@σίσυφος.GR").email == "bob@σίσυφος.gr"
        db.session.rollback()

    migrate(migrated_app, "downgrade", "0005")
    stored = keys(migrated_app)
    assert {email: stored[email] for email, _, _ in REKEYED} == {e: old for e, old, _ in REKEYED}


def test_0006_stops_before_writing_if_two_users_would_share_a_key(migrated_app):
    migrate(migrated_app, "upgrade", "0005")
    # A key no release wrote, set by hand: it is the new key of the first row.
    first, second = add_users(
        migrated_app, ("ada@straße.de", "ada@strasse.de"), ("ada@example.com", "ada@straße.de")
    )
    before = keys(migrated_app)
    with pytest.raises(RuntimeError) as stopped:
        migrate(migrated_app, "upgrade", "0006")
    assert f"users.id {min(first, second)} and {max(first, second)} would share" in str(
        stopped.value
    )
    assert "Nothing was changed" in str(stopped.value)
    assert keys(migrated_app) == before
    assert revision_of(migrated_app) == "0005"


def test_a_downgrade_below_0006_stops_if_look_alike_domains_have_an_account_each(migrated_app):
    migrate(migrated_app, "upgrade", "0006")
    first, second = add_users(
        migrated_app, ("ada@straße.de", "ada@straße.de"), ("ada@strasse.de", "ada@strasse.de")
    )
    with pytest.raises(RuntimeError, match=f"users.id {first} and {second} would share"):
        migrate(migrated_app, "downgrade", "0005")
    assert keys(migrated_app) == {
        "ada@straße.de": "ada@straße.de",
        "ada@strasse.de": "ada@strasse.de",
    }
    assert revision_of(migrated_app) == "0006"
