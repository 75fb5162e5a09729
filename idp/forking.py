"""What a worker forked from a master that loaded the app must not share with it.

gunicorn loads idp in its master and forks the workers from it (preload_app, gunicorn.conf.py),
so that they share the memory of what they only read. A socket must not be shared that way:
two processes writing on one database or Redis connection interleave their messages. Nothing
in create_app() opens one, but whatever the master did open is dropped here, in the child,
without closing it under the master.
"""

from __future__ import annotations

from flask import Flask

from idp.extensions import db
from idp.metrics import port


def after_fork(app: Flask | None) -> None:
    """Run first thing in a forked worker (gunicorn's post_fork) with the master's app."""
    # Only the master serves the metrics port.
    port.close_in_worker()
    if app is None:
        return
    with app.app_context():
        # The pool forgets the master's connections without closing them (that would end
        # them for the master too); the worker opens its own on first use.
        db.engine.dispose(close=False)
    # Redis clients (the limiter's storage, the revocation cache, readiness) need nothing:
    # redis-py's pools notice the new pid and start empty. The background job pool is made on
    # first use, in the worker; the key store rereads its folder on its own schedule.


def warm_up(app: Flask) -> None:
    """Load in the master what every worker would otherwise load for itself on first use."""
    from sqlalchemy.orm import configure_mappers

    from idp.services.passwords import common_passwords

    configure_mappers()
    common_passwords()
    for name in app.jinja_env.list_templates():
        app.jinja_env.get_template(name)
