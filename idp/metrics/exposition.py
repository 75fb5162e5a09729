"""The text a scrape receives: every process's counts, and the state read now."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from idp.metrics.state import StateCollector

# The classic text format, which every Prometheus version reads (our names need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess() -> bool:
    """Whether counts live in PROMETHEUS_MULTIPROC_DIR (gunicorn), not in this process."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry(state: StateCollector) -> CollectorRegistry:
    """A registry that collects the counts and the state once per scrape."""
    collected = CollectorRegistry(auto_describe=False)
    if multiprocess():
        # Every worker's files, the dead ones' included: a counter never goes back.
        MultiProcessCollector(collected)
    else:
        collected.register(_Forward(REGISTRY))
    collected.register(state)
    return collected


def render(state: StateCollector) -> bytes:
    """The Prometheus text exposition of everything idp measures."""
    return generate_latest(registry(state))


class _Forward:
    """Collect another registry's metrics (this process's own counters)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self):  # type: ignore[no-untyped-def]
        return self.source.collect()
