"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`.

A configuration the server refuses is one line on stderr naming the variable and the fix, and
exit status 2: for the server, every `flask` command and the mail worker alike.
"""

import sys

from idp import create_app
from idp.errors import ConfigurationError

try:
    app = create_app()
except ConfigurationError as refusal:
    print(f"idp: refusing to start: {refusal}", file=sys.stderr)
    sys.exit(2)
