"""Database engine set-up that differs per backend."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import Engine, event

from idp.extensions import db, migrate

MIGRATIONS_DIR = "migrations"


def init_app(app: Flask, migrations_dir: str) -> None:
    """Bind SQLAlchemy and Flask-Migrate; give SQLite WAL, foreign keys and write locks."""
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations_dir, render_as_batch=True)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own would be a deferred BEGIN).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock at the start of every transaction. A deferred transaction that
        # reads and then writes fails at once with "database is locked" when another writer
        # committed in between; an immediate one waits its turn (busy_timeout) instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
