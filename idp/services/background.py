"""Work done after the answer is sent: mail delivery and the look-ups behind same-answer endpoints.

Running the account look-up, token write and SMTP delivery of "forgot password" and "resend
verification" here makes the answer cost the same for every address, whoever owns it. Jobs are
not durable: what they work on is a committed outbox row, which `mail send-pending` picks up if
the process dies first (idp.services.outbox).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Flask

from idp import audit, database

log = logging.getLogger(__name__)


class BackgroundJobs:
    """A small thread pool whose jobs run inside an application context."""

    def __init__(self, app: Flask, workers: int = 2) -> None:
        self.app = app
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, job: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run job(*args, **kwargs) soon, in its own application context."""
        with self._lock:
            if self._executor is None:
                # Created on first use, so that gunicorn's fork happens before any thread exists.
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="idp-job")
            # The job's audit events belong to the request that asked for it.
            future = self._executor.submit(self._run, job, args, kwargs, audit.origin())
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _run(
        self,
        job: Callable[..., Any],
        args: tuple,
        kwargs: dict[str, Any],
        origin: dict[str, str | None],
    ) -> None:
        from idp.extensions import db

        with self.app.app_context(), audit.on_behalf_of(origin):
            try:
                job(*args, **kwargs)
            except Exception as exc:
                name = getattr(job, "__name__", job)
                if database.is_unavailable(exc):
                    # An outage, not a bug: what the job worked on is a committed outbox row,
                    # which `mail send-pending` delivers once the database is back.
                    log.warning(
                        "background job %s: database unavailable (%s)", name, type(exc).__name__
                    )
                else:
                    log.exception("background job %s failed", name)
            finally:
                db.session.remove()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for every submitted job; True when none is left."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _done, not_done = wait(pending, timeout=timeout)
        return not not_done
