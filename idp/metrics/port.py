"""IDP_METRICS_BIND: the metrics on a loopback port of their own, served by gunicorn's master.

The master outlives its workers and forks them, so one port shows the counts of all of them
(PROMETHEUS_MULTIPROC_DIR) while the main port's workers serve only the application. The port
has no authentication, which is why IDP_METRICS_BIND takes only loopback addresses.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from idp.config import Settings
from idp.database import one_off_engine
from idp.errors import ConfigurationError
from idp.metrics import exposition
from idp.metrics.state import StateCollector
from idp.services.keys import KeyStore

log = logging.getLogger(__name__)
_server: WSGIServer | None = None


def serve(settings: Settings) -> None:
    """Start the port in a daemon thread of this process; ConfigurationError if it cannot bind."""
    global _server
    if settings.metrics_bind is None or _server is not None:
        return
    host, port = settings.metrics_bind
    # A connection per scrape, closed after it: nothing of the database's is held open in the
    # master when it forks a worker.
    state = StateCollector(
        one_off_engine(settings.database_url),
        KeyStore(settings.keys_dir, settings.keys_reload_interval),
    )
    try:
        _server, _thread = start_http_server(port, addr=host, registry=exposition.registry(state))
    except OSError as exc:
        raise ConfigurationError(
            f"IDP_METRICS_BIND {host}:{port} cannot be served ({exc.strerror}): choose a free port"
        ) from None
    log.info("idp: metrics on http://%s:%d/metrics", host, port)


def close_in_worker() -> None:
    """A forked worker drops its copy of the listening socket: only the master serves it."""
    if _server is not None:
        _server.socket.close()
