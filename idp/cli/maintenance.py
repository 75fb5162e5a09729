"""flask maintenance purge: housekeeping for cron."""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import AppGroup

from idp.clock import utcnow
from idp.services.registry import get_services

maintenance_cli = AppGroup("maintenance", help="Housekeeping for cron.")


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
