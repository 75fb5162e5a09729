"""flask keys list|rotate|activate|retire: the RS256 signing keys."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from idp.cli.arguments import KID_ARGUMENT
from idp.services.keys import ACTIVE, STAGED, KeyCommandError
from idp.services.registry import get_services

keys_cli = AppGroup("keys", help="Manage the RS256 signing keys.")


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
