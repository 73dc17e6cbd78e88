"""Run accounting: per-stage latency percentiles, frame counts, events, and the stats JSON.

Stages of one output frame (milliseconds):

- ``capture``: reading and decoding the visible and IR frames (the slower of the two);
- ``sync_wait``: from the older grab of the pair until the pipeline handled it, less the pairing
  itself: time in the capture queues (a recording is read ahead of a slower model) and waiting
  for the partner frame;
- ``sync``: the pairing itself (deciding which IR frame goes with the visible one);
- ``register``, ``preprocess``, ``infer``, ``postprocess``, ``write``: the pipeline's steps
  (``infer`` is the runner's own measurement);
- ``end_to_end``: from the older grab of the pair until its fused frame was written.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fnet_deploy.helpers.atomic import write_text_atomic

STAGES: tuple[str, ...] = (
    "capture",
    "sync_wait",
    "sync",
    "register",
    "preprocess",
    "infer",
    "postprocess",
    "write",
    "end_to_end",
)
FORMAT_NAME = "fnet-deploy/stream-stats/1"
WINDOW = 100_000
"""Latency percentiles cover at most the last this many frames of a run."""


class LatencySeries:
    """Durations of one stage: count, mean and max over the run, percentiles over a window.

    Attributes:
        observer: also called with every duration (a Prometheus histogram's ``observe``), or
            ``None``.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._values = np.zeros(window, np.float64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.observer: Callable[[float], None] | None = None

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self._values[self.count % len(self._values)] = seconds
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if self.observer is not None:
            self.observer(seconds)

    def recent(self, last: int | None = None) -> np.ndarray:
        """The recorded durations still in the window, oldest first (at most ``last``)."""
        size = len(self._values)
        kept = min(self.count, size)
        order = np.arange(self.count - kept, self.count) % size
        values = self._values[order]
        return values if last is None else values[-last:]

    def summary(self, last: int | None = None) -> dict[str, float | int]:
        """``count, mean, p50, p95, p99, max`` in milliseconds (percentiles over the window)."""
        if self.count == 0:
            return {"count": 0}
        values = self.recent(last) * 1000.0
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {
            "count": self.count,
            "mean": round(self.total / self.count * 1000.0, 3),
            "p50": round(float(p50), 3),
            "p95": round(float(p95), 3),
            "p99": round(float(p99), 3),
            "max": round(self.max * 1000.0, 3),
        }


@dataclass
class FrameCounts:
    """Frame counts of a run.

    Attributes:
        vis_read, ir_read: frames the sources delivered.
        vis_dropped_live, ir_dropped_live: live frames replaced by newer ones before use.
        vis_corrupt, ir_corrupt: frames skipped because they could not be decoded.
        paired: visible frames that found an IR partner.
        vis_unpaired: visible frames dropped for lack of an IR frame within the allowed skew.
        vis_pending: visible frames read but not yet paired or dropped (in the capture queue or
            waiting for an IR frame); at the end of a run, those a stop request left unfused.
        ir_unused: IR frames no visible frame was paired with.
        infer_errors: pairs lost to a backend error.
        dropped_on_stop: pairs not fused because the run was stopping: refused by the batcher of
            a several-pair run (waiting for their batch at the stop, or handed in after it).
        written: fused frames written to the sink.
        reconnects: live sources reopened after a loss.
    """

    vis_read: int = 0
    ir_read: int = 0
    vis_dropped_live: int = 0
    ir_dropped_live: int = 0
    vis_corrupt: int = 0
    ir_corrupt: int = 0
    paired: int = 0
    vis_unpaired: int = 0
    vis_pending: int = 0
    ir_unused: int = 0
    infer_errors: int = 0
    dropped_on_stop: int = 0
    written: int = 0
    reconnects: int = 0


class OutageLog:
    """Every loss of a live source (or of a served backend) and how long it lasted.

    Capture threads call :meth:`lost` and :meth:`back` (host ``time.monotonic()`` seconds), and
    the pipeline for a backend server that cannot be reached; the pipeline and the browser view
    read :meth:`summary` from other threads. Totals cover the whole
    run; the list keeps the last :attr:`KEEP` outages (a run that retries forever stays bounded).
    """

    KEEP = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, float] = {}
        self._recent: collections.deque[tuple[str, float, float]] = collections.deque(
            maxlen=self.KEEP
        )
        self.count = 0
        self._closed_seconds = 0.0
        self._closed_longest = 0.0

    def lost(self, role: str, at: float) -> None:
        """``role`` (source ``vis`` or ``ir``, or the ``backend``) was lost at ``at``."""
        with self._lock:
            if role not in self._open:
                self._open[role] = at
                self.count += 1

    def back(self, role: str, at: float) -> float:
        """``role`` was back at ``at``; returns the outage's length in seconds."""
        with self._lock:
            start = self._open.pop(role, at)
            seconds = max(0.0, at - start)
            self._recent.append((role, start, seconds))
            self._closed_seconds += seconds
            self._closed_longest = max(self._closed_longest, seconds)
            return seconds

    def summary(self, started: float, now: float) -> dict[str, Any]:
        """``count``, ``total_s``, ``longest_s`` and the recent outages (``source``,
        ``lost_at_s`` since ``started``, ``seconds``, ``ongoing``), ongoing ones counted up to
        ``now``."""
        with self._lock:
            ongoing = [(role, start, max(0.0, now - start)) for role, start in self._open.items()]
            finished = list(self._recent)
            total = self._closed_seconds + sum(seconds for _, _, seconds in ongoing)
            longest = max([self._closed_longest] + [seconds for _, _, seconds in ongoing])
            count = self.count
        entries = [(*entry, False) for entry in finished] + [(*entry, True) for entry in ongoing]
        return {
            "count": count,
            "total_s": round(total, 3),
            "longest_s": round(longest, 3),
            "recent": [
                {
                    "source": role,
                    "lost_at_s": round(start - started, 3),
                    "seconds": round(seconds, 3),
                    "ongoing": is_ongoing,
                }
                for role, start, seconds, is_ongoing in entries[-self.KEEP :]
            ],
        }


@dataclass
class RunStats:
    """Everything measured during one stream run.

    A run has two phases: setting up (from this object's creation: loading the model, an export
    on first use) and fusing (from :meth:`start_fusing`, when the pipeline opens its sources);
    ``throughput`` counts the fusing time only.

    Attributes:
        queue_depth: frames waiting at the last count update: ``vis`` and ``ir`` in the
            capture queues, ``pairing`` visible frames in the pairer.
        refresh: set by a running pipeline: brings ``counts`` and ``queue_depth`` up to date
            (thread-safe; :meth:`current` calls it).
    """

    info: dict[str, Any] = field(default_factory=dict)
    counts: FrameCounts = field(default_factory=FrameCounts)
    latency: dict[str, LatencySeries] = field(
        default_factory=lambda: {stage: LatencySeries() for stage in STAGES}
    )
    skew: LatencySeries = field(default_factory=LatencySeries)
    events: list[dict[str, Any]] = field(default_factory=list)
    outages: OutageLog = field(default_factory=OutageLog)
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    fusing_started: float | None = None
    first_written: float | None = None
    finished: float | None = None
    stopped_by: str = "running"
    queue_depth: dict[str, int] = field(default_factory=dict)
    refresh: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def start_fusing(self) -> None:
        """The setup is over: fusing starts now (the first call counts)."""
        if self.fusing_started is None:
            self.fusing_started = time.monotonic()

    def frame_written(self) -> None:
        """A fused frame was written (the first one's time is kept)."""
        if self.first_written is None:
            self.first_written = time.monotonic()

    def event(self, message: str) -> None:
        """Record something that happened (reconnection, skipped frame, backend error)."""
        self.events.append({"t": round(time.monotonic() - self.started, 3), "message": message})

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    @property
    def setup_seconds(self) -> float:
        """Seconds from the run's start until fusing started (so far, while setting up)."""
        end = self.fusing_started or self.finished or time.monotonic()
        return end - self.started

    @property
    def fusing_seconds(self) -> float:
        """Seconds of fusing: from :meth:`start_fusing` until the run finished (or now)."""
        if self.fusing_started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.fusing_started

    @property
    def phase(self) -> str:
        """``setting up``, ``fusing`` or ``finished``."""
        if self.finished is not None:
            return "finished"
        return "setting up" if self.fusing_started is None else "fusing"

    @property
    def throughput(self) -> float:
        """Fused frames written per second of fusing time (the setup not counted)."""
        seconds = self.fusing_seconds
        return self.counts.written / seconds if seconds > 0 else 0.0

    def current(self) -> dict[str, Any]:
        """:meth:`to_dict` with the counts brought up to date first (from any thread)."""
        refresh = self.refresh
        if refresh is not None:
            refresh()
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The stats JSON document (see ``docs/runtime.md``)."""
        first = self.first_written
        return {
            "format": FORMAT_NAME,
            **self.info,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_wall)),
            "phase": self.phase,
            "wall_time_s": round(self.elapsed, 3),
            "setup_s": round(self.setup_seconds, 3),
            "fusing_s": round(self.fusing_seconds, 3),
            "first_frame_s": None if first is None else round(first - self.started, 3),
            "stopped_by": self.stopped_by,
            "throughput_fps": round(self.throughput, 3),
            "frames": asdict(self.counts),
            "queue_depth": dict(self.queue_depth),
            "latency_ms": {stage: series.summary() for stage, series in self.latency.items()},
            "pair_skew_ms": self.skew.summary(),
            "outages": self.outages.summary(self.started, self.finished or time.monotonic()),
            "events": self.events,
        }

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` atomically."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
