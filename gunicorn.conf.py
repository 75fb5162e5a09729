"""gunicorn settings for idp; `gunicorn wsgi:app` reads this file from the project folder.

Command-line flags and GUNICORN_CMD_ARGS override anything here.
"""

import os
import sys

# One log (idp.logs): gunicorn's own lines in IDP_LOG_FORMAT too (JSON unless told otherwise),
# and an access line per request, on by default, with the request id and no query string.
logger_class = "idp.logs.GunicornLogger"
accesslog = "-"
# A request that needs longer than this is stuck (SMTP is bounded by IDP_MAIL_TIMEOUT).
timeout = 30
graceful_timeout = 30


def on_starting(server):
    """Refuse a bad configuration before any worker is forked; warn about memory counters."""
    from idp import PROJECT_ROOT, check_before_serving
    from idp.errors import ConfigurationError

    try:
        check_before_serving(str(PROJECT_ROOT / "instance"))
    except ConfigurationError as refusal:
        # One line and status 2, not a traceback from every worker that tries to boot.
        print(f"idp: refusing to start: {refusal}", file=sys.stderr)
        sys.exit(2)
    if server.cfg.workers > 1 and not os.environ.get("IDP_REDIS_URL"):
        server.log.warning(
            "idp: %d workers keep separate rate-limit counters in memory, so every limit is "
            "multiplied by the worker count; set IDP_REDIS_URL to share them",
            server.cfg.workers,
        )


def post_worker_init(worker):
    """Say when a worker has loaded the app: gunicorn only logs that it began booting one."""
    worker.log.info("idp: worker %s is ready", worker.pid)
