"""The browser view: the fused stream as MJPEG over HTTP, beside the run's live statistics.

``--out http://@:8080`` (every interface), ``http://ADDRESS:8080`` (that address) or
``http://:8080`` (127.0.0.1 only, the default without an address) serves, from the standard
library's HTTP server in a thread:

- ``/``: a small page with the stream and, beside it, the per-stage latency percentiles, frame
  counts (dropped, unpaired, corrupt), reconnections and outages, refreshed twice a second;
- ``/stream.mjpg``: ``multipart/x-mixed-replace`` JPEG frames; every client gets the newest frame
  (a slow client skips frames and never holds the run back);
- ``/frame.jpg``: the newest frame;
- ``/stats.json``: the run's statistics document (what ``--stats`` writes at the end), built
  when asked, so always current (``phase``: ``setting up`` while the model loads);
- ``/metrics``: the run's Prometheus metrics (:mod:`~fnet_deploy.runtime.prometheus`).

Frames are encoded to JPEG by the serving threads, once per frame and only while someone
watches. There is no authentication: serve on every interface only on a network you trust.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.sinks import Sink
from fnet_deploy.runtime.stats import FORMAT_NAME, RunStats
from fnet_deploy.runtime.uri import URI, endpoint

if TYPE_CHECKING:
    from fnet_deploy.runtime.prometheus import StreamMetrics

log = logging.getLogger("fnet_deploy.runtime")

DEFAULT_QUALITY = 80
"""JPEG quality of the streamed frames (``?quality=``)."""
WAIT_SECONDS = 0.5
"""How long a streaming thread waits for a new frame before checking that the view is open."""
BOUNDARY = "fnetframe"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebViewSink(Sink):
    """Serves the fused stream and live statistics to browsers (see the module docstring).

    The server listens from construction (an address in use is refused at once) until
    :meth:`close`.

    Attributes:
        url: the page's address (``0.0.0.0`` when serving on every interface).
    """

    def __init__(self, uri: URI, fps: float | None = None) -> None:
        super().__init__(uri, fps)
        where = endpoint(uri)
        self.quality = uri.integer("quality", DEFAULT_QUALITY)
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._sequence = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._stats: RunStats | None = None
        self._metrics: StreamMetrics | None = None
        self._closed = False
        self._announced = False
        server_class = _Server6 if ":" in where.host else _Server
        try:
            self._server = server_class((where.host, where.port), _handler(self))
        except OSError as err:
            raise FnetError(
                f"{uri}: cannot serve on {where.host} port {where.port} "
                f"({(err.strerror or str(err)).lower()})"
            ) from None
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="web-view"
        )
        self._thread.daemon = True
        self._thread.start()

    @property
    def name(self) -> str:
        """Where it serves, with the port the system chose for ``:0`` (the URI as written
        says ``:0``, which no client can connect to)."""
        return self.url

    def _write(self, image: np.ndarray) -> None:
        self._announce()
        with self._cond:
            self._frame = image
            self._sequence += 1
            self._cond.notify_all()

    def attach(self, stats: RunStats, metrics: StreamMetrics | None) -> None:
        """Serve ``stats`` as ``/stats.json`` and ``metrics`` as ``/metrics``."""
        with self._cond:
            self._stats, self._metrics = stats, metrics

    def observe(self, stats: RunStats) -> None:
        """Say where the view is (once), and serve ``stats`` if none was attached."""
        self._announce()
        with self._cond:
            if self._stats is None:
                self._stats = stats

    def close(self) -> None:
        """Stop serving: streams end, the port is released; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def stats_document(self) -> bytes:
        """The run's statistics document as of now (JSON bytes); before the run is attached,
        a document saying it is starting."""
        with self._cond:
            stats = self._stats
        if stats is None:
            return json.dumps({"format": FORMAT_NAME, "stopped_by": "starting"}).encode()
        return json.dumps(stats.current()).encode()

    def metrics_document(self) -> tuple[bytes, str] | None:
        """The run's Prometheus metrics and their content type, ``None`` without metrics."""
        with self._cond:
            metrics = self._metrics
        return None if metrics is None else metrics.exposition()

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest frame as ``(sequence number, JPEG bytes)`` once one newer than ``after``
        is there; ``None`` when none came within ``timeout`` or the view is closed."""
        with self._cond:
            if self._sequence <= after and not self._closed:
                self._cond.wait(timeout)
            if self._closed or self._frame is None or self._sequence <= after:
                return None
            sequence, frame = self._sequence, self._frame
            cached = self._jpeg
        if cached is not None and cached[0] == sequence:
            return cached
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise FnetError(f"{self.name}: OpenCV could not encode a frame as JPEG")
        encoded = (sequence, data.tobytes())
        with self._cond:
            if self._jpeg is None or self._jpeg[0] < sequence:
                self._jpeg = encoded
        return encoded

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            where = (
                " (every interface)"
                if self.url.startswith(("http://0.0.0.0", "http://[::]"))
                else ""
            )
            log.info("browser view at %s%s", self.url, where)


def _handler(view: WebViewSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fnet-deploy"

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path in ("/", "/index.html"):
                self._send("text/html; charset=utf-8", PAGE.encode())
            elif path == "/stats.json":
                self._send("application/json", view.stats_document())
            elif path == "/metrics":
                metrics = view.metrics_document()
                if metrics is None:
                    self.send_error(404, "no metrics in this run")
                else:
                    self._send(metrics[1], metrics[0])
            elif path == "/frame.jpg":
                item = view.next_jpeg(-1, 0.0)
                if item is None:
                    self.send_error(503, "no frame yet")
                else:
                    self._send("image/jpeg", item[1])
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self.send_error(404)

        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            sequence = 0
            try:
                while not view.closed:
                    item = view.next_jpeg(sequence, WAIT_SECONDS)
                    if item is None:
                        continue
                    sequence, jpeg = item
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
            except OSError:  # the browser went away
                return

        def log_message(self, format: str, *args: object) -> None:
            """Requests are not logged (a page polls twice a second)."""

    return Handler


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fnet-deploy stream</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{margin:0;background:#111;color:#ddd;font:14px system-ui,sans-serif;display:flex;
flex-wrap:wrap;gap:16px;padding:16px}
#video{flex:1 1 480px;min-width:320px}#video img{width:100%;image-rendering:pixelated;
background:#000}
#side{flex:0 0 340px}table{border-collapse:collapse;width:100%;margin-bottom:12px}
td,th{padding:2px 6px;text-align:right;border-bottom:1px solid #333}
td:first-child,th:first-child{text-align:left}h1{font-size:16px;margin:0 0 8px}
#state{color:#8c8}#state.off{color:#c88}
</style></head><body>
<div id="video"><img id="stream" src="stream.mjpg" alt="fused stream"></div>
<div id="side"><h1>fnet-deploy stream <span id="state">live</span></h1>
<div id="summary"></div>
<table id="counts"><tbody></tbody></table>
<table id="latency"><thead><tr><th>stage (ms)</th><th>p50</th><th>p95</th><th>p99</th>
<th>max</th></tr></thead><tbody></tbody></table>
<table id="outages"><thead><tr><th>outage</th><th>at (s)</th><th>length (s)</th></tr></thead>
<tbody></tbody></table></div>
<script>
"use strict";
function row(cells, header) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement(header ? "th" : "td");
    td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows) {
  document.querySelector("#" + id + " tbody").replaceChildren(...rows.map(r => row(r)));
}
function fmt(x) { return typeof x === "number" ? x.toFixed(1) : "-"; }
function render(s) {
  const f = s.frames || {}, o = s.outages || {count: 0, total_s: 0, recent: []};
  document.getElementById("summary").textContent =
    `${f.written ?? 0} fused, ${fmt(s.throughput_fps)} fps, ` +
    (s.phase && s.phase !== "finished" ? s.phase : s.stopped_by ?? "");
  fill("counts", [
    ["frames read (vis / ir)", `${f.vis_read ?? 0} / ${f.ir_read ?? 0}`],
    ["dropped live (vis / ir)", `${f.vis_dropped_live ?? 0} / ${f.ir_dropped_live ?? 0}`],
    ["unpaired visible", `${f.vis_unpaired ?? 0}`],
    ["IR unused", `${f.ir_unused ?? 0}`],
    ["corrupt (vis / ir)", `${f.vis_corrupt ?? 0} / ${f.ir_corrupt ?? 0}`],
    ["backend errors", `${f.infer_errors ?? 0}`],
    ["reconnects", `${f.reconnects ?? 0}`],
    ["outages (total s)", `${o.count} (${fmt(o.total_s)})`],
  ]);
  const stages = Object.entries(s.latency_ms || {}).filter(([, v]) => v.count);
  fill("latency", stages.map(([k, v]) => [k, fmt(v.p50), fmt(v.p95), fmt(v.p99), fmt(v.max)]));
  fill("outages", o.recent.slice(-8).map(e =>
    [e.source + (e.ongoing ? " (now)" : ""), fmt(e.lost_at_s), fmt(e.seconds)]));
}
async function tick() {
  const state = document.getElementById("state");
  try {
    const response = await fetch("stats.json", {cache: "no-store"});
    render(await response.json());
    state.textContent = "live"; state.className = "";
  } catch (err) {
    state.textContent = "ended"; state.className = "off";
  }
  setTimeout(tick, 500);
}
tick();
</script></body></html>
"""
"""The browser view's page: the stream and the statistics tables (filled with textContent only,
so names from the command line cannot inject markup)."""
