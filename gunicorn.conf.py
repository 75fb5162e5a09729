"""gunicorn settings for idp; `gunicorn wsgi:app` reads this file from the project folder.

Command-line flags and GUNICORN_CMD_ARGS override anything here.
"""

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

# Metrics (idp.metrics): every worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR and
# a scrape adds them up. prometheus-client reads the variable when it is first imported, so it
# is set here, before any hook imports idp. Without IDP_METRICS_TOKEN or IDP_METRICS_BIND
# nothing is served and nothing is written.
_METRICS_DIR_OWNED = "_IDP_METRICS_DIR_OWNED"
if (os.environ.get("IDP_METRICS_TOKEN") or os.environ.get("IDP_METRICS_BIND")) and not (
    os.environ.get("PROMETHEUS_MULTIPROC_DIR")
):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
    os.environ[_METRICS_DIR_OWNED] = "1"


def on_starting(server):
    """Refuse a bad configuration before any worker is forked; warn about memory counters;
    open the metrics port."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        os.makedirs(metrics_dir, exist_ok=True)
        # Counts left by an earlier run would be added to this one's.
        for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.remove(stale)

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


def post_fork(server, worker):
    """Only the master serves the metrics port: the worker lets go of its copy of the socket."""
    from idp.metrics import port

    port.close_in_worker()


def on_exit(server):
    """Remove the metrics folder made for this run (an operator's own is left where it is)."""
    if os.environ.get(_METRICS_DIR_OWNED) and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):
    """Say when a worker has loaded the app: gunicorn only logs that it began booting one."""
    worker.log.info("idp: worker %s is ready", worker.pid)
