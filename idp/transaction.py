"""One transaction per request, command or job: services flush, the caller commits.

A service stages its changes in the session and flushes; the request (idp.http commits a
successful answer's transaction before it is sent), the CLI command or the background job
commits them. What must follow a commit, and only a commit (a revocation marked in Redis, a
mail job submitted, the audit line of a fact), is queued with after_commit() and runs once the
commit has succeeded; a rollback drops it.

A few commits stay inside services, each for a reason said where it is: a refusal that must
persist (a replayed refresh token revokes its session, then the request fails), a read
transaction ended before the deliberately slow password hash, and the mail outbox's claim
protocol, whose every step is its own transaction.

Hooks run inside SQLAlchemy's after_commit event: they must not use the database.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from idp.extensions import db

_HOOKS = "idp.after_commit"


def after_commit(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run callback(*args, **kwargs) once the current transaction commits; not if it rolls back."""
    db.session.info.setdefault(_HOOKS, []).append(partial(callback, *args, **kwargs))


def commit() -> None:
    """Commit the current transaction, then run what was queued for after it."""
    db.session.commit()


@event.listens_for(Session, "after_commit")
def _run_hooks(session: Session) -> None:
    hooks = session.info.pop(_HOOKS, [])
    for hook in hooks:
        hook()


@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _drop_hooks(session: Session, *_args: Any) -> None:
    session.info.pop(_HOOKS, None)
