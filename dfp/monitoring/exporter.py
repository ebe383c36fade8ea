"""`/metrics` over HTTP: a prometheus_client Collector that takes one snapshot per scrape."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dfp.monitoring.metrics import families
from dfp.monitoring.snapshot import Snapshot

log = logging.getLogger(__name__)


class SnapshotCollector(Collector):
    """Calls `read` on every scrape. A failed read (say, SQLite busy while runs write) serves
    the last good snapshot with `dfp_exporter_up 0`: one bad scrape must not make every
    series stale in Prometheus (alerts would resolve and fire again)."""

    def __init__(self, read: Callable[[], Snapshot], sources: tuple[str, ...]):
        self._read = read
        self._sources = sources
        self._last: Snapshot | None = None
        self._last_success: float | None = None
        # One scrape at a time: the reader caches and is not built for concurrent calls.
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        up = 1.0
        with self._lock:
            try:
                snapshot = self._read()
                self._last, self._last_success = snapshot, time.time()
            except Exception:
                log.exception("reading the platform's state failed")
                up = 0.0
                snapshot = self._last
                if snapshot is not None:
                    # Ages (sensor lag, unseen commits) keep growing while reads fail.
                    snapshot = dataclasses.replace(snapshot, now=time.time())
            last_success = self._last_success
        if snapshot is not None:
            yield from families(snapshot, self._sources)
        yield GaugeMetricFamily("dfp_exporter_up", "1 when the last scrape read the state.", up)
        if last_success is not None:
            yield GaugeMetricFamily(
                "dfp_exporter_last_success_timestamp_seconds",
                "When the exporter last read the platform's state.",
                last_success,
            )
        yield GaugeMetricFamily(
            "dfp_exporter_scrape_duration_seconds",
            "How long the exporter took to read the platform's state.",
            time.monotonic() - started,
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        log.debug(format, *args)


def make_registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def server(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """A WSGI server answering /metrics (and anything else) from `registry`."""
    return make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
