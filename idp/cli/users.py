"""flask users list|show|disable|enable|sign-out: the accounts, as an admin sees them."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup

from idp import transaction
from idp.cli.arguments import KID_ARGUMENT
from idp.clock import utcnow
from idp.services import users as user_service
from idp.services.registry import get_services

users_cli = AppGroup("users", help="Manage user accounts.")
# An address may start with "-" too: take it as the argument, not as an unknown option.
EMAIL_ARGUMENT = KID_ARGUMENT


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "never"


@users_cli.command("list")
def users_list() -> None:
    """List every user, oldest first: email, public id (sub), state, created."""
    for user in user_service.list_users():
        email = user_service.printable(user.email)
        state = user_service.state_of(user)
        click.echo(f"{email}  {user.public_id}  {state}  {_when(user.created_at)}")


@users_cli.command("show", context_settings=EMAIL_ARGUMENT)
@click.argument("email")
def users_show(email: str) -> None:
    """Show one user, with their last login and how many of their sessions are live."""
    try:
        details = user_service.describe_user(email, utcnow())
    except user_service.UserCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    user = details.user
    click.echo(f"email: {user_service.printable(user.email)}")
    click.echo(f"sub: {user.public_id}")
    click.echo(f"state: {details.state}")
    click.echo(f"created: {_when(user.created_at)}")
    click.echo(f"last login: {_when(user.last_login_at)}")
    click.echo(f"refresh sessions: {details.live_refresh_sessions}")
    click.echo(f"browser sessions: {details.live_browser_sessions}")


@users_cli.command("disable", context_settings=EMAIL_ARGUMENT)
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable a user: they cannot sign in and every token and session of theirs stops."""
    try:
        ended = user_service.disable_user(email, get_services().sessions, utcnow())
    except user_service.UserCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    shown = user_service.printable(email)
    if ended is None:
        click.echo(f"user {shown} is already disabled; nothing changed")
    else:
        click.echo(f"user {shown} disabled; sessions ended: {ended.total}")


@users_cli.command("enable", context_settings=EMAIL_ARGUMENT)
@click.argument("email")
def users_enable(email: str) -> None:
    """Let a disabled user sign in again; their old sessions and tokens stay ended."""
    try:
        enabled = user_service.enable_user(email, utcnow())
    except user_service.UserCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    shown = user_service.printable(email)
    if enabled:
        click.echo(f"user {shown} enabled")
    else:
        click.echo(f"user {shown} is not disabled; nothing changed")


@users_cli.command("sign-out", context_settings=EMAIL_ARGUMENT)
@click.argument("email")
def users_sign_out(email: str) -> None:
    """End every session and access token of a user; they may sign in again."""
    try:
        ended = user_service.sign_out_user(email, get_services().sessions, utcnow())
    except user_service.UserCommandError as exc:
        raise click.ClickException(str(exc)) from exc
    transaction.commit()
    click.echo(
        f"user {user_service.printable(email)} signed out; sessions ended: {ended.total} "
        f"({ended.refresh} refresh, {ended.browser} browser)"
    )
