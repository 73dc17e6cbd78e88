"""The real-time fusion pipeline: sources -> pair -> register -> preprocess -> runner ->
postprocess -> sink, with per-stage accounting and fault handling.

Faults and what the run does:

- a corrupt frame: skipped and counted (by its capture thread);
- a live source that stops: reopened with backoff while the run goes on (visible frames without
  IR partner meanwhile are dropped and counted; each outage and its length go into the stats);
  given up after ``reconnect_timeout`` (never when it is ``math.inf``);
- a finite source that ends early (truncated file): the run ends normally, saying so;
- a backend error on one pair: logged and counted; ``max_consecutive_errors`` in a row stop the
  run with a clear error;
- a runner that refuses frames because the run is stopping (the batcher of a several-pair run,
  :class:`~fnet_deploy.runtime.batcher.BatcherClosed`): the frame is counted as dropped on stop
  and the run ends;
- SIGINT / SIGTERM (see :func:`stop_on_signals`): the run stops after the current frame and the
  output is finalised (a second signal interrupts at once, still finalising the output).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import numpy as np

from fnet_deploy.backends.base import OUTPUT_NAME, BackendUnavailable, Runner
from fnet_deploy.data.color import Luminance
from fnet_deploy.data.images import compose_output, to_uint8
from fnet_deploy.data.views import Layout, compose_view
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.signals import stop_signals_handled
from fnet_deploy.runtime.batcher import BatcherClosed
from fnet_deploy.runtime.capture import Capture, End
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.preprocess import VisibleConverter, postprocess, to_single_channel
from fnet_deploy.runtime.registration import Registrar
from fnet_deploy.runtime.sinks import Sink
from fnet_deploy.runtime.sources import Frame, Source
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.sync import Decision, FramePairer, Unpaired, default_max_skew

log = logging.getLogger("fnet_deploy.runtime")

POLL_SECONDS = 0.05
PROGRESS_SECONDS = 0.25


@dataclass(frozen=True)
class StreamOptions:
    """How the pipeline pairs and treats frames.

    Attributes:
        max_skew: largest time difference (s) between paired frames; ``None``: half the frame
            period of the slower stream.
        ir_offset: seconds added to IR timestamps (constant offset between the cameras).
        luminance: ``ycbcr`` or ``gray`` (see :class:`VisibleConverter`).
        max_consecutive_errors: backend errors in a row that stop the run.
        reconnect_timeout: seconds a lost live source may take to come back (``math.inf``:
            retry forever).
        live_fps: frame rate assumed for live sources that do not report one.
        layout: ``fused`` writes the fused frame; ``side-by-side`` and ``grid`` write the
            labelled composite of :func:`fnet_deploy.data.views.compose_view` (visible, IR, fused).
    """

    max_skew: float | None = None
    ir_offset: float = 0.0
    luminance: Luminance = "ycbcr"
    max_consecutive_errors: int = 10
    reconnect_timeout: float = 30.0
    live_fps: float = 30.0
    layout: Layout = "fused"


class StopFlag:
    """Asks a running pipeline to stop after the current frame; remembers why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Request the stop (the first reason given is kept)."""
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """While active, SIGINT and SIGTERM set ``stop``; a second signal raises KeyboardInterrupt.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise KeyboardInterrupt(name)
        log.warning("%s received: finishing the current frame and closing the output", name)
        stop.set(f"signal {name}")

    with stop_signals_handled(handler):
        yield


class StreamPipeline:
    """Fuses a visible and an IR source into a sink with a runner.

    Args:
        vis, ir: the sources (not opened yet).
        runner: an activated runner (its inputs: ``ir``, ``vis``; output ``fused``).
        sink: where fused frames go; its ``fps`` defaults to the visible source's.
        registrar: the IR-to-visible registration and model size.
        gain: the IR gain control.
        options: pairing and fault settings.
        stats: accounting to fill (its ``info`` is completed here).
    """

    def __init__(
        self,
        vis: Source,
        ir: Source,
        runner: Runner,
        sink: Sink,
        registrar: Registrar,
        gain: ThermalGain,
        options: StreamOptions,
        stats: RunStats | None = None,
    ) -> None:
        self.vis = vis
        self.ir = ir
        self.runner = runner
        self.sink = sink
        self.registrar = registrar
        self.gain = gain
        self.options = options
        self.stats = stats or RunStats()
        self.convert = VisibleConverter(options.luminance)
        self._errors_in_row = 0
        self._refused = False
        self._unavailable_since: float | None = None
        self._warned_unpaired = False
        self._pairer: FramePairer | None = None
        self._counts_lock = threading.Lock()

    def run(
        self,
        stop: StopFlag | None = None,
        progress: Callable[[RunStats], None] | None = None,
    ) -> RunStats:
        """Run until the visible source ends, a stop is requested, or a fatal error.

        The sink is closed (the video finalised) however the run ends.

        Returns:
            The run's statistics (``stopped_by`` says how it ended).

        Raises:
            FnetError: a source that cannot be opened, frames that do not fit the registration,
                too many backend errors in a row, a live source lost for good.
        """
        stop = stop or StopFlag()
        stats = self.stats
        captures: list[Capture] = []
        try:
            for role, source in (("vis", self.vis), ("ir", self.ir)):
                source.open()
                captures.append(
                    Capture(source, role, self.options.reconnect_timeout, stats.outages)
                )
                # from here on the capture owns the source (and closes it when its thread ends)
            vis_cap, ir_cap = captures
            stats.refresh = functools.partial(self._update_counts, captures)
            pairer = self._start(vis_cap, ir_cap)
            self._loop(vis_cap, ir_cap, pairer, stop, progress)
        except FnetError as err:
            stats.stopped_by = f"error: {err}"
            raise
        except KeyboardInterrupt as err:
            stats.stopped_by = f"interrupted ({err or 'SIGINT'})"
            raise
        finally:
            for capture in captures:
                capture.stop()
            if len(captures) < 2:  # the IR source failed to open: nothing reads the visible one
                self.vis.close()
            self.sink.close()
            self._update_counts(captures)
            stats.refresh = None
            stats.info["frame_size"] = list(self.registrar.size)
            stats.finished = time.monotonic()
        return stats

    def _start(self, vis_cap: Capture, ir_cap: Capture) -> FramePairer:
        opts = self.options
        if self.vis.live != self.ir.live:
            live, recorded = (self.vis, self.ir) if self.vis.live else (self.ir, self.vis)
            raise FnetError(
                f"cannot pair live {live.name} with recorded {recorded.name}: live frames carry "
                "host-clock times, recorded ones their position in the recording"
            )
        vis_fps = self.vis.fps or (opts.live_fps if self.vis.live else None)
        ir_fps = self.ir.fps or (opts.live_fps if self.ir.live else None)
        max_skew = opts.max_skew
        if max_skew is None:
            max_skew = default_max_skew(vis_fps, ir_fps, opts.live_fps)
        if self.sink.fps is None:
            self.sink.fps = vis_fps or opts.live_fps
        self.stats.info.update(
            {
                "vis_source": self.vis.name,
                "ir_source": self.ir.name,
                "sink": self.sink.name,
                "vis_fps": vis_fps,
                "ir_fps": ir_fps,
                "output_fps": self.sink.fps,
                "max_skew_ms": round(max_skew * 1000.0, 3),
                "ir_offset_ms": round(opts.ir_offset * 1000.0, 3),
                "luminance": opts.luminance,
                "ir_gain": self.gain.mode,
            }
        )
        log.info(
            "pairing %s (%s fps) with %s (%s fps) within %.1f ms",
            self.vis.name,
            _fps_text(vis_fps),
            self.ir.name,
            _fps_text(ir_fps),
            max_skew * 1000.0,
        )
        self._pairer = FramePairer(max_skew, opts.ir_offset)
        self.stats.start_fusing()
        vis_cap.start()
        ir_cap.start()
        return self._pairer

    def _loop(
        self,
        vis_cap: Capture,
        ir_cap: Capture,
        pairer: FramePairer,
        stop: StopFlag,
        progress: Callable[[RunStats], None] | None,
    ) -> None:
        stats = self.stats
        ir_ended = False
        ir_reconnects = 0
        last_progress = 0.0
        while True:
            if stop.is_set() or self.sink.stop_requested or self._refused:
                stats.stopped_by = stop.reason or (
                    "display closed" if self.sink.stop_requested else "the runner stopped"
                )
                return
            if pairer.waiting and not ir_ended:
                item = ir_cap.get(POLL_SECONDS)
                if isinstance(item, End):
                    ir_ended = True
                    pairer.end_ir()
                    self._report_end("ir", self.ir, item)
                elif item is not None:
                    if ir_cap.counts.reconnects != ir_reconnects:
                        ir_reconnects = ir_cap.counts.reconnects
                        self.gain.reset()  # a reopened camera may come back at another level
                    pairer.add_ir(item)
                if not ir_ended and (bound := ir_cap.lower_bound()) is not None:
                    pairer.advance_ir(bound + self.options.ir_offset)
            else:
                item = vis_cap.get(POLL_SECONDS)
                if isinstance(item, End):
                    self._report_end("vis", self.vis, item)
                    self._decide(pairer.finish)
                    stats.stopped_by = "end of input"
                    return
                if item is not None:
                    pairer.add_vis(item)
            self._decide(pairer.pop)
            now = time.monotonic()
            if now - last_progress >= PROGRESS_SECONDS:
                self._update_counts([vis_cap, ir_cap])
                self.sink.observe(stats)
                if progress is not None:
                    progress(stats)
                last_progress = now

    def _report_end(self, role: str, source: Source, end: End) -> None:
        if end.reason is None:
            log.info("%s source %s ended", role, source.name)
            return
        message = f"{role} source {source.name} {end.reason}"
        self.stats.event(message)
        if source.live:
            raise FnetError(message)
        log.warning(message)

    def _decide(self, decisions: Callable[[], list[Decision]]) -> None:
        """Take the pairer's final decisions (``pop`` or ``finish``) and handle each, the time
        the pairer took shared among them."""
        start = time.monotonic()
        decided = decisions()
        if decided:
            cost = (time.monotonic() - start) / len(decided)
            for decision in decided:
                self._handle(decision, cost)

    def _handle(self, decision: Decision, pairing_seconds: float) -> None:
        stats = self.stats
        if isinstance(decision, Unpaired):
            self._note_unpaired(decision)
            return
        taken = time.monotonic()
        vis, ir = decision.vis, decision.ir
        oldest = min(vis.grabbed_at, ir.grabbed_at)
        stats.skew.add(abs(decision.skew))
        stats.latency["capture"].add(max(vis.read_seconds, ir.read_seconds))
        stats.latency["sync_wait"].add(max(0.0, taken - oldest - pairing_seconds))
        stats.latency["sync"].add(pairing_seconds)
        fused = self._fuse(vis, ir)
        if fused is None:
            return
        start = time.monotonic()
        self.sink.write(fused)
        end = time.monotonic()
        stats.frame_written()
        stats.latency["write"].add(end - start)
        stats.latency["end_to_end"].add(end - oldest)
        stats.counts.written = self.sink.written

    def _fuse(self, vis: Frame, ir: Frame) -> np.ndarray | None:
        stats = self.stats
        t0 = time.monotonic()
        try:
            ir_image, vis_image = self.registrar(to_single_channel(ir.image), vis.image)
        except FnetError as err:
            raise FnetError(
                f"{self.ir.name} frame {ir.index} with {self.vis.name} frame {vis.index}: {err}"
            ) from None
        t1 = time.monotonic()
        luma, chroma = self.convert(vis_image)
        ir_input = self.gain(ir_image)
        feed = {"ir": ir_input[None, None], "vis": luma[None, None]}
        t2 = time.monotonic()
        stats.latency["register"].add(t1 - t0)
        stats.latency["preprocess"].add(t2 - t1)
        try:
            output = self.runner.infer(feed)[OUTPUT_NAME]
        except BatcherClosed:  # the run is stopping: no batch was run for this frame
            stats.counts.dropped_on_stop += 1
            self._refused = True
            return None
        except BackendUnavailable as err:
            self._backend_unavailable(vis, err)
            return None
        except Exception as err:
            self._backend_error(vis, err)
            return None
        self._backend_back()
        self._errors_in_row = 0
        stats.latency["infer"].add(self.runner.last_inference_time)
        t3 = time.monotonic()
        fused = postprocess(output, chroma)
        if self.options.layout != "fused":
            visible = compose_output(luma, chroma)
            fused = compose_view(fused, visible, to_uint8(ir_input), self.options.layout)
        stats.latency["postprocess"].add(time.monotonic() - t3)
        return fused

    def _backend_unavailable(self, vis: Frame, err: BackendUnavailable) -> None:
        """A frame the backend could not be reached for: counted as a backend error, but waited
        out as a lost camera is (an outage in the statistics, said once, given up after
        ``reconnect_timeout``) rather than counted towards ``max_consecutive_errors``."""
        self.stats.counts.infer_errors += 1
        now = time.monotonic()
        if self._unavailable_since is None:
            self._unavailable_since = now
            self.stats.outages.lost("backend", now)
            message = f"backend {self.runner.name} unreachable at visible frame {vis.index}: {err}"
            log.warning("%s; retrying with backoff", message)
            self.stats.event(message)
        waited = now - self._unavailable_since
        if waited > self.options.reconnect_timeout:
            raise FnetError(
                f"backend {self.runner.name} unreachable for {waited:.0f} s "
                f"(--reconnect-timeout-s {self.options.reconnect_timeout:g}); last: {err}"
            )

    def _backend_back(self) -> None:
        """The backend answered again after an outage: said once, with its length."""
        if self._unavailable_since is None:
            return
        seconds = self.stats.outages.back("backend", time.monotonic())
        self._unavailable_since = None
        message = f"backend {self.runner.name} back after {seconds:.1f} s"
        log.info(message)
        self.stats.event(message)

    def _backend_error(self, vis: Frame, err: Exception) -> None:
        self.stats.counts.infer_errors += 1
        self._errors_in_row += 1
        detail = f"{type(err).__name__}: {err}".splitlines()[0]
        message = f"backend {self.runner.name} failed on visible frame {vis.index} ({detail})"
        log.warning(message)
        self.stats.event(message)
        limit = self.options.max_consecutive_errors
        if self._errors_in_row >= limit:
            raise FnetError(f"stopping after {limit} consecutive backend errors; last: {detail}")

    def _note_unpaired(self, decision: Unpaired) -> None:
        if self._warned_unpaired:
            return
        self._warned_unpaired = True
        nearest = "none seen" if decision.nearest is None else f"{decision.nearest * 1000:.1f} ms"
        log.warning(
            "visible frame %d (t=%.3f s) has no IR frame within the allowed skew (nearest: %s); "
            "such frames are dropped and counted",
            decision.vis.index,
            decision.vis.timestamp,
            nearest,
        )

    def _update_counts(self, captures: list[Capture]) -> None:
        """Bring the counts and queue depths up to date (from the pipeline's thread, or any
        other through ``stats.refresh``)."""
        with self._counts_lock:
            self._count(captures)

    def _count(self, captures: list[Capture]) -> None:
        counts = self.stats.counts
        by_role = {capture.role: capture for capture in captures}
        pairer = self._pairer
        depth = self.stats.queue_depth
        for capture in captures:
            depth[capture.role] = capture.queued_frames()
        depth["pairing"] = pairer.pending if pairer else 0
        if "vis" in by_role:
            vis = by_role["vis"]
            # the queue first: a frame the capture thread reads meanwhile then counts as read
            # but not yet as pending, so a snapshot never shows more pending than read
            queued = vis.queued_frames()
            counts.vis_read = vis.counts.read
            counts.vis_dropped_live = vis.counts.dropped
            counts.vis_corrupt = vis.counts.corrupt
            counts.vis_pending = queued + (pairer.pending if pairer else 0)
        if "ir" in by_role:
            ir = by_role["ir"]
            counts.ir_read = ir.counts.read
            counts.ir_dropped_live = ir.counts.dropped
            counts.ir_corrupt = ir.counts.corrupt
        counts.reconnects = sum(c.counts.reconnects for c in captures)
        if pairer is not None:
            counts.paired = pairer.paired
            counts.vis_unpaired = pairer.unpaired
            counts.ir_unused = pairer.ir_unused + pairer.ir_out_of_order
        counts.written = self.sink.written


def _fps_text(fps: float | None) -> str:
    return "?" if fps is None else f"{fps:g}"
