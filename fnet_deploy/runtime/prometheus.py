"""Prometheus metrics of a stream run (``stream --metrics-port``, the browser view's ``/metrics``).

Served through ``prometheus_client`` from a registry of the run's own (imported only when metrics
are asked for). Every series has a ``pair`` label: ``main`` for a single pair, the pair's name
with ``--pair``/``--pairs``. Counts are read from each pair's :class:`RunStats` when scraped, so a
scrape is current even while the pipeline waits on the model:

- ``fnet_frames_read_total{source}``: frames the ``vis`` / ``ir`` source delivered;
- ``fnet_frames_fused_total``: fused frames written;
- ``fnet_frames_dropped_total{source, reason}``: ``live`` (replaced by a newer frame before
  use), ``corrupt`` (not decodable), ``unpaired`` (visible, no IR partner in time), ``unused``
  (IR, no visible frame paired with it);
- ``fnet_backend_errors_total``, ``fnet_reconnects_total``;
- ``fnet_queue_depth{queue}``: frames waiting in the ``vis`` / ``ir`` capture queues and in the
  ``pairing`` stage;
- ``fnet_fused_fps``: fused frames per second of fusing time;
- ``fnet_stage_latency_seconds{stage}``: a histogram per stage (the stages of the statistics,
  :data:`~fnet_deploy.runtime.stats.STAGES`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.stats import RunStats

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip
"""Histogram bucket bounds (s): from the pairing (microseconds) to a CPU model under load and a
read-ahead queue (tens of seconds)."""
SINGLE_PAIR = "main"
"""The ``pair`` label of a run with one pair."""
_DROPS = (
    ("vis", "live", "vis_dropped_live"),
    ("ir", "live", "ir_dropped_live"),
    ("vis", "corrupt", "vis_corrupt"),
    ("ir", "corrupt", "ir_corrupt"),
    ("vis", "unpaired", "vis_unpaired"),
    ("ir", "unused", "ir_unused"),
)
"""``fnet_frames_dropped_total`` labels (source, reason) and the count behind each."""


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``--metrics-port``: ``PORT`` (every interface) or ``HOST:PORT`` (that address only;
    ``[::1]:PORT`` for IPv6); port 0 lets the system choose a free one.

    Raises:
        FnetError: anything else, naming the option.
    """
    host, port_text = "0.0.0.0", text.strip()
    if port_text.startswith("["):
        host, closed, rest = port_text[1:].partition("]")
        port_text = rest[1:] if closed and rest.startswith(":") else ""
    elif ":" in port_text:
        host, _, port_text = port_text.rpartition(":")
    if not host or not port_text.isdigit() or int(port_text) > 65535:
        raise FnetError(
            f"--metrics-port: expected a port from 0 to 65535, or HOST:PORT, got {text!r}"
        )
    return host, int(port_text)


def open_metrics(address: tuple[str, int] | None, serves_http: bool) -> StreamMetrics | None:
    """A run's metrics when asked for: ``--metrics-port`` (``address``, served from now on) or an
    ``http://`` output (``serves_http``, which serves them itself); ``None`` otherwise.

    Raises:
        FnetError: ``prometheus_client`` missing, or the address cannot be served.
    """
    if address is None and not serves_http:
        return None
    metrics = StreamMetrics()
    if address is not None:
        metrics.url = metrics.serve(*address)
    return metrics


class StreamMetrics:
    """The metrics of one run, in a ``prometheus_client`` registry of their own.

    Raises:
        FnetError: ``prometheus_client`` is not installed.
    """

    def __init__(self) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise FnetError(
                "Prometheus metrics need prometheus_client: pip install prometheus_client"
            ) from None
        self._client = prometheus_client
        self.registry = prometheus_client.CollectorRegistry()
        self._pairs: dict[str, RunStats] = {}
        self._lock = threading.Lock()
        self._latency = prometheus_client.Histogram(
            "fnet_stage_latency_seconds",
            "Time a fused frame spent in each stage.",
            ["pair", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_RunCollector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None
        """Where :meth:`serve` serves the metrics (``None`` before)."""

    def add_pair(self, name: str, stats: RunStats) -> None:
        """Export pair ``name``'s counts and latencies (its stages observed from now on)."""
        with self._lock:
            self._pairs[name] = stats
        for stage, series in stats.latency.items():
            series.observer = self._latency.labels(name, stage).observe

    def pairs(self) -> list[tuple[str, RunStats]]:
        """The exported pairs, in the order they were added."""
        with self._lock:
            return list(self._pairs.items())

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return self._client.generate_latest(self.registry), self._client.CONTENT_TYPE_LATEST

    def serve(self, host: str, port: int) -> str:
        """Serve ``/metrics`` on ``host``:``port`` from a thread until :meth:`close`.

        Returns:
            The metrics address (with the port the system chose for port 0).

        Raises:
            FnetError: the address cannot be served (in use, not this machine's).
        """
        try:
            server, thread = self._client.start_http_server(port, addr=host, registry=self.registry)
        except OSError as err:
            raise FnetError(
                f"--metrics-port: cannot serve on {host} port {port} "
                f"({(err.strerror or str(err)).lower()})"
            ) from None
        self._server, self._thread = server, thread
        bound = int(server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{bound}/metrics"

    def close(self) -> None:
        """Stop serving (if :meth:`serve` was called) and release the port; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _RunCollector:
    """Reads every pair's counts when scraped (brought up to date first)."""

    def __init__(self, metrics: StreamMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        """The counter and gauge families of every pair."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        read = CounterMetricFamily(
            "fnet_frames_read", "Frames the sources delivered.", labels=["pair", "source"]
        )
        fused = CounterMetricFamily("fnet_frames_fused", "Fused frames written.", labels=["pair"])
        dropped = CounterMetricFamily(
            "fnet_frames_dropped",
            "Frames not fused, by source and reason.",
            labels=["pair", "source", "reason"],
        )
        errors = CounterMetricFamily(
            "fnet_backend_errors", "Pairs lost to a backend error.", labels=["pair"]
        )
        reconnects = CounterMetricFamily(
            "fnet_reconnects", "Live sources reopened after a loss.", labels=["pair"]
        )
        depth = GaugeMetricFamily(
            "fnet_queue_depth", "Frames waiting, by queue.", labels=["pair", "queue"]
        )
        fps = GaugeMetricFamily(
            "fnet_fused_fps", "Fused frames per second of fusing time.", labels=["pair"]
        )
        for name, stats in self._metrics.pairs():
            refresh = stats.refresh
            if refresh is not None:
                refresh()
            counts = stats.counts
            read.add_metric([name, "vis"], counts.vis_read)
            read.add_metric([name, "ir"], counts.ir_read)
            fused.add_metric([name], counts.written)
            for source, reason, field in _DROPS:
                dropped.add_metric([name, source, reason], getattr(counts, field))
            errors.add_metric([name], counts.infer_errors)
            reconnects.add_metric([name], counts.reconnects)
            for queue in ("vis", "ir", "pairing"):
                depth.add_metric([name, queue], stats.queue_depth.get(queue, 0))
            fps.add_metric([name], stats.throughput)
        yield from (read, fused, dropped, errors, reconnects, depth, fps)
