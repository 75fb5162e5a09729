"""flask clients create|show|list|rotate-secret|delete: the OAuth clients."""

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
@click.option("--public", "kind", flag_value=client_service.PUBLIC, help="A browser or native app.")
@click.option(
    "--confidential", "kind", flag_value=client_service.CONFIDENTIAL, help="A server-side web app."
)
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, help="An exact redirect URI (repeatable)."
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    help="An exact URI to return to after sign-out (repeatable).",
)
@click.option("--scope", default="", help="Space-separated scopes the client may request.")
@click.option("--first-party", is_flag=True, help="The admin's own app: users are not asked.")
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="A resource server its tokens are for (repeatable; default: this server's audience).",
)
@click.option(
    "--introspect", is_flag=True, help="A resource server: may introspect its audiences' tokens."
)
def clients_create(
    name: str,
    kind: str | None,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    scope: str,
    first_party: bool,
    audiences: tuple[str, ...],
    introspect: bool,
) -> None:
    """Register a client; print its id and, unless it is public, its secret once.

    Without --public or --confidential the client is a service (client_credentials only).
    """
    settings = get_services().settings
    try:
        created = client_service.create_client(
            name,
            scope,
            utcnow(),
            kind=kind or client_service.SERVICE,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout_redirect_uris,
            first_party=first_party,
            allow_http_redirects=settings.allow_http_redirects,
            audiences=audiences,
            introspect=introspect,
        )
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    click.echo(f"client_id: {created.client.client_id}")
    if created.client_secret:
        click.echo(f"client_secret: {created.client_secret}")
        click.echo(
            "Store the secret now: it is kept only as a hash and cannot be shown again.", err=True
        )


@clients_cli.command("show", context_settings=KID_ARGUMENT)
@click.argument("client_id")
def clients_show(client_id: str) -> None:
    """Show a client's registration (never its secret)."""
    settings = get_services().settings
    try:
        client = client_service.find_client_for_admin(client_id)
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    kind = (
        client_service.PUBLIC
        if client.is_public
        else client_service.SERVICE
        if "client_credentials" in client.grant_types.split()
        else client_service.CONFIDENTIAL
    )
    click.echo(f"client_id: {client.client_id}")
    click.echo(f"name: {client.name}")
    click.echo(f"kind: {kind}")
    click.echo(f"first_party: {'yes' if client.first_party else 'no'}")
    click.echo(f"scope: {client.scope or '-'}")
    click.echo(f"grant_types: {client.grant_types}")
    click.echo(f"audiences: {client.audiences or settings.audience}")
    click.echo(f"introspect: {'yes' if client.can_introspect else 'no'}")
    for uri in client.redirect_uris.split():
        click.echo(f"redirect_uri: {uri}")
    for uri in client.post_logout_redirect_uris.split():
        click.echo(f"post_logout_redirect_uri: {uri}")
    click.echo(f"created: {client.created_at.isoformat(timespec='seconds')}")


@clients_cli.command("rotate-secret", context_settings=KID_ARGUMENT)
@click.argument("client_id")
def clients_rotate_secret(client_id: str) -> None:
    """Give a confidential client a new secret and print it once; the old one stops working."""
    try:
        secret = client_service.rotate_secret(client_id, utcnow())
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    get_services().clients.forget(client_id)
    click.echo(f"client_secret: {secret}")


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
        client_service.delete_client(client_id, utcnow(), get_services().sessions)
    except client_service.ClientCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    get_services().clients.forget(client_id)
    click.echo(f"client {client_id} deleted")
