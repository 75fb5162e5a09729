"""One transaction per request: services flush, the request commits, hooks follow the commit."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from idp import transaction
from idp.clock import utcnow
from idp.extensions import db
from idp.models import User
from tests.flows import unique_email


def a_user(email: str) -> User:
    now = utcnow()
    return User(
        public_id=email,
        email=email,
        email_canonical=email,
        password_hash="x",
        first_name="A",
        last_name="B",
        is_active=True,
        created_at=now,
        updated_at=now,
    )


def exists(app, email: str) -> bool:
    with app.app_context():
        found = db.session.scalar(select(User.id).where(User.email == email)) is not None
        db.session.rollback()
        return found


def test_hooks_run_after_a_commit_and_never_after_a_rollback(app):
    ran: list[str] = []
    with app.app_context():
        db.session.add(a_user(unique_email()))
        transaction.after_commit(ran.append, "committed")
        assert ran == []  # nothing before the commit
        transaction.commit()
        assert ran == ["committed"]

        db.session.add(a_user(unique_email()))
        transaction.after_commit(ran.append, "rolled back")
        db.session.rollback()
        transaction.commit()  # a later commit does not run the dropped hook
    assert ran == ["committed"]


def test_a_request_commits_a_successful_answers_changes_and_drops_a_failed_ones(make_app):
    app = make_app()
    ran: list[str] = []
    probe = Blueprint("probe", __name__)

    @probe.post("/probe/<email>/<int:status>")
    def stage(email: str, status: int) -> tuple[str, int]:
        db.session.add(a_user(email))
        db.session.flush()  # what a service does: flush, never commit
        transaction.after_commit(ran.append, email)
        return "", status

    app.register_blueprint(probe)
    client = app.test_client()
    kept, dropped = unique_email("kept"), unique_email("dropped")
    assert client.post(f"/probe/{kept}/201").status_code == 201
    assert client.post(f"/probe/{dropped}/400").status_code == 400
    assert exists(app, kept) and not exists(app, dropped)
    assert ran == [kept]


def test_a_commit_that_fails_after_the_view_is_answered_like_any_error(make_app, monkeypatch):
    app = make_app()
    probe = Blueprint("probe", __name__)

    @probe.post("/probe/<email>")
    def stage(email: str) -> tuple[str, int]:
        db.session.add(a_user(email))
        db.session.flush()
        return "", 201

    app.register_blueprint(probe)
    client = app.test_client()

    def pool_exhausted() -> None:
        raise sa_exc.TimeoutError("QueuePool limit reached")  # the database cannot be reached

    monkeypatch.setattr(transaction, "commit", pool_exhausted)
    lost = client.post(f"/probe/{unique_email()}")
    assert lost.status_code == 503 and "Retry-After" in lost.headers

    def a_bug() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(transaction, "commit", a_bug)
    broken = client.post(f"/probe/{unique_email()}")
    assert broken.status_code == 500
    assert broken.json["error"] == "server_error"  # the default surface's shape
    assert "boom" not in broken.get_data(as_text=True)
