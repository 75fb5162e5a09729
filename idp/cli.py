"""Admin commands: `flask --app wsgi keys|clients|maintenance ...`.

Parse arguments, call a service, print.
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask
from flask.cli import AppGroup

from idp import audit
from idp.clock import utcnow
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


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(keys_cli)
    app.cli.add_command(clients_cli)
    app.cli.add_command(maintenance_cli)


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
    audit.record("key.rotated", "success", kid=kid, staged=staged)
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
    audit.record("key.activated", "success", kid=kid)
    click.echo(f"key {kid} is active")


@keys_cli.command("retire", context_settings=KID_ARGUMENT)
@click.argument("kid")
def keys_retire(kid: str) -> None:
    """Remove a key from JWKS; tokens signed with it stop verifying."""
    try:
        get_services().keys.retire(kid)
    except KeyCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("key.retired", "success", kid=kid)
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
    audit.record(
        "client.created", "success", client_id=created.client.client_id, scope=created.client.scope
    )
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
    audit.record("client.deleted", "success", client_id=client_id)
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
