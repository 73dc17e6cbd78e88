"""Several camera pairs, one model: each pair runs its own pipeline, their frames share batches.

Every pair is a :class:`~fnet_deploy.runtime.pipeline.StreamPipeline` of its own (capture
threads, pairing, registration, gain, sink, statistics) running in its own thread; instead of
the runner, its pipeline is given a :class:`~fnet_deploy.runtime.batcher.LaneRunner`, so that the
frames of all pairs meet in one :class:`~fnet_deploy.runtime.batcher.Batcher`, which runs the
model in the calling thread::

    pair 1: sources -> pair -> register -> preprocess ─┐             ┌─ postprocess -> sink 1
    pair 2: sources -> pair -> register -> preprocess ─┼─ batch ─ runner ─┼─ postprocess -> sink 2
    ...                                                ┘   (N x 1 x H x W)  └─ ...

Faults stay with their pair: a pair whose source is lost, whose frames do not fit its
calibration or whose backend calls keep failing ends (its output finalised, its statistics
saying why) while the others go on; a lost live camera is reconnected in its pair's capture
thread meanwhile. A stop request (SIGINT/SIGTERM, :class:`StopFlag`) lets the batch in progress
finish and drops the frames still waiting for theirs (each pair's ``dropped_on_stop``); then
every pair ends and finalises its output.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnet_deploy.backends.base import Runner
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.runtime.batcher import Batcher, LaneRunner
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline
from fnet_deploy.runtime.registration import Registrar
from fnet_deploy.runtime.sinks import Sink
from fnet_deploy.runtime.sources import Source
from fnet_deploy.runtime.stats import LatencySeries, RunStats

log = logging.getLogger("fnet_deploy.runtime")

FORMAT_NAME = "fnet-deploy/multi-stream-stats/1"
PROGRESS_SECONDS = 0.25
JOIN_SECONDS = 10.0
"""How long a stopped run waits for each pair to finalise its output."""
DEFAULT_BATCH_TIMEOUT = 0.040
"""Seconds the first frame of a batch waits for the other pairs' frames (one frame at 25 fps)."""


@dataclass
class CameraPair:
    """One pair of a multi-pair run: what its pipeline needs besides the runner.

    Attributes:
        name: the pair's name in messages and statistics (unique in a run).
        vis, ir: its sources (not opened yet); sink: its output.
        registrar, gain, options: its registration, IR gain and pairing/fault settings.
    """

    name: str
    vis: Source
    ir: Source
    sink: Sink
    registrar: Registrar
    gain: ThermalGain
    options: StreamOptions


@dataclass(frozen=True)
class BatchOptions:
    """How frames of several pairs are batched.

    Attributes:
        timeout: seconds the first frame of a batch waits for the rest (nvstreammux's
            ``batched-push-timeout``).
        max_batch: most frames per runner call (``None``: one per pair; 1: no batching); never
            more than the runner takes (:attr:`~fnet_deploy.backends.base.Runner.max_batch`, e.g.
            a TensorRT engine's profile).
    """

    timeout: float = DEFAULT_BATCH_TIMEOUT
    max_batch: int | None = None


@dataclass
class MultiStats:
    """Everything measured in a multi-pair run: each pair's :class:`RunStats` and the batches."""

    info: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, RunStats] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    finished: float | None = None
    stopped_by: str = "running"

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    @property
    def written(self) -> int:
        """Fused frames written, all pairs together."""
        return sum(stats.counts.written for stats in self.pairs.values())

    @property
    def throughput(self) -> float:
        """Fused frames written per second of wall time, all pairs together."""
        elapsed = self.elapsed
        return self.written / elapsed if elapsed > 0 else 0.0

    def failed(self) -> dict[str, str]:
        """The pairs that ended on an error, with the error."""
        return {
            name: stats.stopped_by.removeprefix("error: ")
            for name, stats in self.pairs.items()
            if stats.stopped_by.startswith("error: ")
        }

    def to_dict(self) -> dict[str, Any]:
        """The statistics JSON of the run (see ``docs/runtime.md``): each pair's entry is a
        complete single-pair document (``fnet-deploy/stream-stats/1``)."""
        return {
            "format": FORMAT_NAME,
            **self.info,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_wall)),
            "wall_time_s": round(self.elapsed, 3),
            "stopped_by": self.stopped_by,
            "written": self.written,
            "throughput_fps": round(self.throughput, 3),
            "batch": self.batch,
            "pairs": {name: stats.to_dict() for name, stats in self.pairs.items()},
        }

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` atomically."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


class MultiStream:
    """Fuses several camera pairs with one runner, batching their frames.

    Args:
        pairs: the pairs (names unique).
        runner: an activated runner taking N x 1 x H x W inputs.
        batch: batching settings.
        stats: accounting to fill (its ``info`` is kept and completed).
    """

    def __init__(
        self,
        pairs: list[CameraPair],
        runner: Runner,
        batch: BatchOptions | None = None,
        stats: MultiStats | None = None,
    ) -> None:
        names = [pair.name for pair in pairs]
        if not pairs or len(set(names)) != len(names):
            raise ValueError(f"pairs need unique names, got {names}")
        self.runner = runner
        self.batch = batch or BatchOptions()
        self.stats = stats or MultiStats()
        limits = [n for n in (self.batch.max_batch, runner.max_batch) if n is not None]
        self.max_batch = min(limits) if limits else None
        self.batcher = Batcher(runner, self.batch.timeout, self.max_batch)
        self.pipelines: dict[str, StreamPipeline] = {}
        self.lanes: dict[str, LaneRunner] = {}
        for pair in pairs:
            lane = self.batcher.lane(pair.name)
            pair_stats = RunStats(info={"pair": pair.name, **self.stats.info})
            pair_stats.latency = _with_batch_wait(pair_stats.latency, lane.waits)
            self.lanes[pair.name] = lane
            self.pipelines[pair.name] = StreamPipeline(
                pair.vis,
                pair.ir,
                lane,
                pair.sink,
                pair.registrar,
                pair.gain,
                pair.options,
                pair_stats,
            )
            self.stats.pairs[pair.name] = pair_stats

    def run(
        self,
        stop: StopFlag | None = None,
        progress: Callable[[MultiStats], None] | None = None,
    ) -> MultiStats:
        """Run every pair until each ends (its input, an error of its own) or a stop request.

        Runs the model in the calling thread (the one that handles signals); each pair's
        pipeline runs in a thread of its own. Every pair's output is finalised however the run
        ends.

        Returns:
            The statistics (each pair's ``stopped_by`` says how it ended).
        """
        stop = stop or StopFlag()
        stats = self.stats
        stats.batch = {
            "timeout_ms": round(self.batch.timeout * 1000.0, 3),
            "max_batch": self.max_batch,
        }
        threads = [
            threading.Thread(
                target=self._run_pair, args=(name, stop), name=f"pair-{name}", daemon=True
            )
            for name in self.pipelines
        ]
        for thread in threads:
            thread.start()

        def tick() -> None:
            if progress is not None:
                self._update_batch()
                progress(stats)

        def failing(err: BaseException) -> None:
            """An interrupt, or an error in the progress call: the pairs cannot be served any
            more, so they are asked to stop before their frames are refused."""
            if isinstance(err, KeyboardInterrupt):
                stats.stopped_by = f"interrupted ({err or 'SIGINT'})"
            else:
                stats.stopped_by = f"error: {type(err).__name__}: {err}"
            stop.set(stats.stopped_by)

        try:
            self.batcher.serve(tick, PROGRESS_SECONDS, failing, stop.is_set)
            stats.stopped_by = stop.reason or "every pair ended"
        finally:
            for thread in threads:
                thread.join(JOIN_SECONDS)
            self._update_batch()
            stats.finished = time.monotonic()
        return stats

    def _run_pair(self, name: str, stop: StopFlag) -> None:
        """One pair's pipeline, in its own thread; its end, however it comes, is its own."""
        pipeline = self.pipelines[name]
        try:
            pipeline.run(stop)
        except FnetError as err:
            log.error("pair %s stopped: %s", name, err)
        except Exception as err:  # a bug in this pair's path: the other pairs go on
            pipeline.stats.stopped_by = f"error: {type(err).__name__}: {err}"
            log.exception("pair %s stopped", name)
        finally:
            self.lanes[name].close()

    def _update_batch(self) -> None:
        total = self.batcher.summary().to_dict()
        del total["infer_ms"]  # per group only: calls of different sizes take different times
        self.stats.batch.update(total)
        self.stats.batch["dropped_on_stop"] = self.batcher.dropped_on_stop
        self.stats.batch["groups"] = {
            f"{w}x{h}": group.to_dict() for (w, h), group in self.batcher.groups.items()
        }


def _with_batch_wait(
    latency: dict[str, LatencySeries], waits: LatencySeries
) -> dict[str, LatencySeries]:
    """The pipeline's stages with ``batch_wait`` (time a frame waited for its batch) before
    ``infer``."""
    stages: dict[str, LatencySeries] = {}
    for stage, series in latency.items():
        if stage == "infer":
            stages["batch_wait"] = waits
        stages[stage] = series
    return stages
