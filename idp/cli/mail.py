"""flask mail send-pending|status: the mail outbox's worker and its view of the queue."""

from __future__ import annotations

import signal
import threading
from collections import Counter

import click
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from idp.clock import utcnow
from idp.extensions import db
from idp.services.registry import get_services

mail_cli = AppGroup("mail", help="The mail outbox: deliver what is due, show the queue.")


@mail_cli.command("send-pending")
@click.option("--loop", is_flag=True, help="Keep going: a mail worker, until SIGTERM or Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="With --loop: seconds between passes.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Mails handled per pass.",
)
def mail_send_pending(loop: bool, interval: float, limit: int) -> None:
    """Deliver the mails that are due: new ones a crash left behind, and retries."""
    outbox = get_services().outbox
    stop = _stop_on_sigterm() if loop else threading.Event()
    while True:
        try:
            outcomes = outbox.send_pending(utcnow(), limit)
        except SQLAlchemyError as exc:
            if not loop:
                raise click.ClickException(f"database unavailable: {type(exc).__name__}") from exc
            # A worker outlives a database restart; the next pass retries.
            db.session.rollback()
            click.echo(f"database unavailable ({type(exc).__name__}); retrying", err=True)
            outcomes = Counter()
        if outcomes or not loop:
            summary = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
            click.echo(summary or "nothing due")
        if not loop or stop.is_set():
            return
        # A full pass means more is waiting: go again at once.
        if sum(outcomes.values()) < limit and stop.wait(interval):
            return


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@mail_cli.command("status")
def mail_status() -> None:
    """Show the queue: rows per status, what is due, what is in doubt, the latest dead mails."""
    now = utcnow()
    status = get_services().outbox.status(now)
    for name, count in status.counts.items():
        click.echo(f"{name}: {count}")
    click.echo(f"due now: {status.due}")
    click.echo(f"in doubt (claimed, never reported back): {status.in_doubt}")
    if status.oldest_unsent is not None:
        age = int((now - status.oldest_unsent).total_seconds())
        click.echo(f"oldest unsent: {age}s old")
    for row in status.recent_dead:
        finished = row.finished_at.isoformat(timespec="seconds") if row.finished_at else "-"
        click.echo(
            f"dead #{row.id}  {row.message}  {row.recipient}  "
            f"attempts={row.attempts}  error={row.last_error}  {finished}"
        )
