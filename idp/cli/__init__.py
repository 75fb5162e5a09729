"""Admin commands: `flask --app wsgi keys|clients|users|maintenance|mail ...`, one module per noun.

Each command parses its arguments, calls a service, prints.
"""

from __future__ import annotations

from flask import Flask

from idp.cli.clients import clients_cli
from idp.cli.keys import keys_cli
from idp.cli.mail import mail_cli
from idp.cli.maintenance import maintenance_cli
from idp.cli.users import users_cli


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(keys_cli)
    app.cli.add_command(clients_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(maintenance_cli)
    app.cli.add_command(mail_cli)
