"""gunicorn settings for idp; `gunicorn wsgi:app` reads this file from the project folder.

Command-line flags and GUNICORN_CMD_ARGS override anything here.
"""

import gc
import glob
import os
import shutil
import sys
import tempfile

# One log (idp.logs): gunicorn's own lines in IDP_LOG_FORMAT too (JSON unless told otherwise),
# and an access line per request, on by default, with the request id and no query string.
logger_class = "idp.logs.GunicornLogger"
accesslog = "-"
# A request that needs longer than this is stuck (SMTP is bounded by IDP_MAIL_TIMEOUT).
timeout = 30
graceful_timeout = 30

# Load idp once, in the master, before forking: the workers share the pages of the code and data
# they only read instead of each importing its own copy (see "Running in production"). What must
# not cross a fork is opened after it (idp.forking, from post_fork below). A code change then
# needs a restart, not a HUP.
preload_app = True

# Metrics (idp.metrics): every worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR and
# a scrape adds them up. prometheus-client reads the variable when it is first imported, so it
# is set here, before the app is loaded. Without IDP_METRICS_TOKEN or IDP_METRICS_BIND nothing
# is served and nothing is written.
_METRICS_DIR_OWNED = "_IDP_METRICS_DIR_OWNED"
_METRICS_DIR_CLEARED = "_IDP_METRICS_DIR_CLEARED"
if os.environ.get("IDP_METRICS_TOKEN") or os.environ.get("IDP_METRICS_BIND"):
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
        os.environ[_METRICS_DIR_OWNED] = "1"
    elif not os.environ.get(_METRICS_DIR_CLEARED):  # once per master, not at each HUP
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
        # Counts left by an earlier run would be added to this one's.
        for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(stale)
    os.environ[_METRICS_DIR_CLEARED] = "1"


def on_starting(server):
    """Refuse a bad configuration before any worker is forked; warn about memory counters;
    open the metrics port."""
    from idp import PROJECT_ROOT, check_before_serving
    from idp.config import load_settings
    from idp.errors import ConfigurationError
    from idp.metrics import port

    try:
        check_before_serving(str(PROJECT_ROOT / "instance"))
        port.serve(load_settings(str(PROJECT_ROOT / "instance")))
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


def when_ready(server):
    """Load in the master what each worker would otherwise load for itself (idp.forking)."""
    if server.cfg.preload_app:
        from idp.forking import warm_up

        warm_up(server.app.wsgi())


def pre_fork(server, worker):
    """Move everything loaded so far out of the cycle collector's reach: a collection in a
    worker would otherwise write to every object's header, copying each shared page."""
    gc.freeze()


def post_fork(server, worker):
    """Give the worker its own connections and leave the master's alone (idp.forking)."""
    from idp.forking import after_fork

    after_fork(server.app.wsgi() if server.cfg.preload_app else None)


def on_exit(server):
    """Remove the metrics folder made for this run (an operator's own is left where it is)."""
    if os.environ.get(_METRICS_DIR_OWNED) and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):
    """Say when a worker has loaded the app: gunicorn only logs that it began booting one."""
    worker.log.info("idp: worker %s is ready", worker.pid)
