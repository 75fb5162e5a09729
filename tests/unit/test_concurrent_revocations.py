"""Two transactions revoking one access token at once (a double-clicked logout).

Meaningful on PostgreSQL, where the second INSERT waits for the first transaction; SQLite has
one writer at a time, so there the second simply runs after the first.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from idp.clock import utcnow
from idp.extensions import db
from idp.models import RevokedAccessToken
from idp.services.registry import get_services


def test_a_token_revoked_by_two_transactions_at_once_is_denied_once(app: Any) -> None:
    now = utcnow()
    claims = {"jti": uuid.uuid4().hex, "exp": int(now.timestamp()) + 600}
    first_staged = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with app.app_context():
            try:
                get_services().sessions.deny_access_token(claims, now)
                db.session.flush()  # the row is written, not yet committed
                first_staged.set()
                time.sleep(0.3)  # the second transaction starts meanwhile
                db.session.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)
                first_staged.set()
            finally:
                db.session.remove()

    def second() -> None:
        first_staged.wait(timeout=10)
        with app.app_context():
            try:
                get_services().sessions.deny_access_token(claims, now)
                db.session.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).where(RevokedAccessToken.jti == claims["jti"])
        )
    assert count == 1
