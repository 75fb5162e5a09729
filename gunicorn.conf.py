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
_METRICS_DIR_OWNER = "_IDP_METRICS_DIR_OWNER"  # pid of the master that made the folder
_METRICS_DIR_CLEARED = "_IDP_METRICS_DIR_CLEARED"  # pid of the master that cleared yours


def _refuse(reason):
    """One line and status 2, not a traceback from every worker that tries to boot."""
    _remove_own_metrics_dir()
    print(f"idp: refusing to start: {reason}", file=sys.stderr)
    sys.exit(2)


def _prepare_metrics_dir():
    if not (os.environ.get("IDP_METRICS_TOKEN") or os.environ.get("IDP_METRICS_BIND")):
        return
    me = str(os.getpid())
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    owner = os.environ.get(_METRICS_DIR_OWNER)
    if owner == me or os.environ.get(_METRICS_DIR_CLEARED) == me:
        return  # a HUP rereads this file: same master, same folder, the counts go on
    if not folder or owner:
        # None yet, or one made by the master this one replaces (USR2), which removes it as it
        # exits: a folder of our own.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
        os.environ[_METRICS_DIR_OWNER] = me
        return
    # The operator's own folder: ours alone (others could plant counts there), and emptied of
    # the counts of an earlier run, which would be added to this one's.
    os.makedirs(folder, mode=0o700, exist_ok=True)
    status = os.stat(folder)
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        _refuse(
            f"PROMETHEUS_MULTIPROC_DIR {folder} must belong to this user and be writable by no "
            "one else (other users could write counts into it)"
        )
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.remove(stale)
    os.environ[_METRICS_DIR_CLEARED] = me


def _remove_own_metrics_dir():
    if os.environ.get(_METRICS_DIR_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)


_prepare_metrics_dir()


def on_starting(server):
    """Refuse a bad configuration before any worker is forked; warn about memory counters;
    open the metrics port."""
    from prometheus_client import values

    from idp import PROJECT_ROOT, check_before_serving
    from idp.errors import ConfigurationError
    from idp.metrics import port

    try:
        settings = check_before_serving(str(PROJECT_ROOT / "instance"))
        if settings.metrics_enabled and not getattr(values.ValueClass, "_multiprocess", False):
            # Set with gunicorn's -e (or raw_env), after this file ran: each worker would count
            # alone and every scrape would show one of them.
            raise ConfigurationError(
                "IDP_METRICS_TOKEN and IDP_METRICS_BIND must be in gunicorn's environment when "
                "it starts, not given with -e or raw_env"
            )
        port.serve(settings)
    except ConfigurationError as refusal:
        _refuse(refusal)
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
    """Remove the metrics folder this master made (an operator's own is left where it is)."""
    _remove_own_metrics_dir()


def post_worker_init(worker):
    """Say when a worker has loaded the app: gunicorn only logs that it began booting one."""
    worker.log.info("idp: worker %s is ready", worker.pid)
