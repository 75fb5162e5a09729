"""flask clients create|list|delete: the confidential OAuth clients."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from idp import transaction
from idp.cli.arguments import KID_ARGUMENT
from idp.clock import utcnow
from idp.services import clients as client_service
from idp.services.registry import get_services

clients_cli = AppGroup("clients", help="Manage OAuth clients.")


@clients_cli.command("create")
@click.argument("name")
@click.option("--scope", default="", help="Space-separated scopes the client may request.")
def clients_create(name: str, scope: str) -> None:
    """Register a confidential client (client_credentials); print its secret once."""
    try:
        created = client_service.create_client(name, scope, utcnow())
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
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
    transaction.commit()
    get_services().clients.forget(client_id)
    click.echo(f"client {client_id} deleted")
