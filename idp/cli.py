"""Admin commands: `flask --app wsgi keys|clients|maintenance|mail ...`.

Parse arguments, call a service, print.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from datetime import timedelta

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from idp.clock import utcnow
from idp.extensions import db
from idp.services import clients as client_service
from idp.services.keys import ACTIVE, STAGED, KeyCommandError
from idp.services.registry import get_services

keys_cli = AppGroup("keys", help="Manage the RS256 signing keys.")
# A kid is base64url, so about one in 64 starts with "-" (and so did client ids made before they
# became hex): take it as the argument it is, not as an unknown option (these commands have no
# short options that could swallow part of it).
KID_ARGUMENT = {"ignore_unknown_options": True}
clients_cli = AppGroup("clients", help="Manage OAuth clients.")
maintenance_cli = AppGroup("maintenance", help="Housekeeping for cron.")
mail_cli = AppGroup("mail", help="The mail outbox: deliver what is due, show the queue.")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(keys_cli)
    app.cli.add_command(clients_cli)
    app.cli.add_command(maintenance_cli)
    app.cli.add_command(mail_cli)


@keys_cli.command("list")
def keys_list() -> None:
    """List every key with its creation time and status."""
    for info in get_services().keys.list_keys():
        click.echo(f"{info.kid}  {info.created_at}  {info.status}")


@keys_cli.command("rotate")
@click.option("--staged", is_flag=True, help="Publish the new key now, sign with it later.")
def keys_rotate(staged: bool) -> None:
    """Create a new signing key; the old one stays in JWKS so its tokens keep verifying."""
    kid = get_services().keys.rotate(staged=staged)
    click.echo(kid)
    status = STAGED if staged else ACTIVE
    click.echo(f"key {kid} is {status}", err=True)


@keys_cli.command("activate", context_settings=KID_ARGUMENT)
@click.argument("kid")
def keys_activate(kid: str) -> None:
    """Sign new tokens with a staged key."""
    try:
        get_services().keys.activate(kid)
    except KeyCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"key {kid} is active")


@keys_cli.command("retire", context_settings=KID_ARGUMENT)
@click.argument("kid")
def keys_retire(kid: str) -> None:
    """Remove a key from JWKS; tokens signed with it stop verifying."""
    try:
        get_services().keys.retire(kid)
    except KeyCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"key {kid} is retired")


@clients_cli.command("create")
@click.argument("name")
@click.option("--scope", default="", help="Space-separated scopes the client may request.")
def clients_create(name: str, scope: str) -> None:
    """Register a confidential client (client_credentials); print its secret once."""
    try:
        created = client_service.create_client(name, scope, utcnow())
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"client_id: {created.client.client_id}")
    click.echo(f"client_secret: {created.client_secret}")
    click.echo(
        "Store the secret now: it is kept only as a hash and cannot be shown again.", err=True
    )


@clients_cli.command("list")
def clients_list() -> None:
    """List the clients that are not deleted."""
    for client in client_service.list_clients():
        created = client.created_at.isoformat(timespec="seconds")
        click.echo(f"{client.client_id}  {client.name}  {client.scope or '-'}  {created}")


@clients_cli.command("delete", context_settings=KID_ARGUMENT)
@click.argument("client_id")
def clients_delete(client_id: str) -> None:
    """Delete a client: it can no longer authenticate and its tokens stop verifying."""
    try:
        client_service.delete_client(client_id, utcnow())
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    get_services().clients.forget(client_id)
    click.echo(f"client {client_id} deleted")


@maintenance_cli.command("purge")
@click.option(
    "--retention-days",
    type=click.IntRange(0, 36_500),
    default=30,
    show_default=True,
    help="Keep spent and expired rows this long (for investigations) before deleting them.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Rows deleted per transaction.",
)
def maintenance_purge(retention_days: int, batch_size: int) -> None:
    """Delete expired denylist entries and long-dead one-time tokens, refresh tokens, sessions."""
    counts = get_services().maintenance.purge(utcnow(), timedelta(days=retention_days), batch_size)
    for table, count in counts.items():
        click.echo(f"{table}: {count} deleted")


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
