"""Runs a ``stream`` plan: the checks before any work, the run, and its ending.

Every run takes one road (:func:`run_stream`): check the statistics file and the memory, load
the calibrations, set up each pair (sources, IR gain, outputs), open and activate the runner,
then run the pairs (:func:`~fnet_deploy.runtime.runs.open_run`) under one live view. Exit codes:
0 when every pair ended at the end of its input having fused frames; 128 + the signal after
SIGINT/SIGTERM; 1 when the run fused nothing or, with named pairs, a pair ended on an error or
fused nothing (one ``error:`` line per such pair; the other pairs' outputs are complete).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import typer

from fnet_deploy.backends.base import Runner
from fnet_deploy.commands.common import (
    check_output,
    console,
    luminance_of,
    notice,
    phase,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.commands.pair_specs import PairSpec
from fnet_deploy.commands.stream_view import live_view, runtime_logging, summary
from fnet_deploy.data.images import IMAGE_SUFFIXES, image_size, quiet_native_stderr
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.memory import available_memory, gib, require_memory
from fnet_deploy.helpers.signals import signal_exit_code
from fnet_deploy.inference.select import ModelChoice
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.cost import inference_bytes
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.multi import BatchOptions, CameraPair
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, stop_on_signals
from fnet_deploy.runtime.prometheus import StreamMetrics, open_metrics
from fnet_deploy.runtime.registration import Registrar, Registration
from fnet_deploy.runtime.runs import StreamStats, open_run, pair_stats
from fnet_deploy.runtime.sink_uri import open_sink
from fnet_deploy.runtime.sinks import Sink, TeeSink
from fnet_deploy.runtime.sources import open_source
from fnet_deploy.runtime.stats import RunStats
from fnet_deploy.runtime.uri import URI

DEFAULT_MAX_BATCH = {"cpu": 2}
"""Default most frames per model call by device: a stop (SIGTERM, Ctrl-C) waits for the call in
progress, and on this project's 2-core CPU one 360x270 frame of the default model takes 1-3 s
(more under load), so 2 keeps a stop well under 10 s; batches buy no speed on a CPU (the
benchmark in docs/runtime.md, "What batching buys")."""
DEFAULT_MAX_BATCH_GPU = 16
"""Default most frames per call on a GPU, where a frame takes milliseconds."""


@dataclass(frozen=True)
class StreamPlan:
    """Everything a ``stream`` run does, checked.

    Attributes:
        pairs: the camera pairs.
        named: the pairs were given by ``--pair``/``--pairs``: their frames are batched, and
            the statistics, error lines and exit status are per pair.
        model: what fuses them.
        stats: where the statistics JSON goes, or ``None``.
        max_errors: consecutive backend errors that end a pair.
        reconnect_timeout: seconds a lost live source may take to come back (``inf``: forever).
        batch: how named pairs' frames are batched (``max_batch`` ``None``: the default).
        live: show the live table (``None``: on a terminal).
        encoder: H.264 encoder of ``rtsp://`` outputs (``None``: the best one).
        metrics_address: ``(host, port)`` of the Prometheus endpoint, or ``None``.
    """

    pairs: tuple[PairSpec, ...]
    named: bool
    model: ModelChoice
    stats: Path | None = None
    max_errors: int = 10
    reconnect_timeout: float = 30.0
    batch: BatchOptions = field(default_factory=BatchOptions)
    live: bool | None = None
    encoder: str | None = None
    metrics_address: tuple[str, int] | None = None


def run_stream(plan: StreamPlan) -> None:
    """Run ``plan``; see the module docstring.

    Raises:
        FnetError: a problem found before any work (statistics file, memory, calibration,
            source, output, backend), or the end of a single pair's run on an error.
        typer.Exit: the exit code when not 0.
    """
    if plan.stats is not None:
        check_output(
            plan.stats,
            "--stats",
            suffixes=(".json",),
            inputs=tuple(spec.registration for spec in plan.pairs),
        )
    batch = BatchOptions(plan.batch.timeout, max_batch_for(plan)) if plan.named else None
    if not plan.named:
        _check_frame_memory(plan.pairs[0], plan.model.device)
    registrations = {
        spec.name: Registration.load(spec.registration) if spec.registration else None
        for spec in plan.pairs
    }
    pairs: list[CameraPair] = []
    metrics = _metrics(plan)
    try:
        try:
            _set_up(plan, registrations, pairs)
            runner = plan.model.open(notify=notice)
        except BaseException:
            for pair in pairs:  # served outputs listen already
                pair.sink.close()
            raise
        stop = StopFlag()
        stats = _run(plan, pairs, runner, batch, metrics, stop)
    finally:
        if metrics is not None:
            metrics.close()
    _exit_status(plan, stats, stop)


def _run(
    plan: StreamPlan,
    pairs: list[CameraPair],
    runner: Runner,
    batch: BatchOptions | None,
    metrics: StreamMetrics | None,
    stop: StopFlag,
) -> StreamStats:
    """Activate ``runner``, run the pairs under the live view until they end or ``stop`` is
    set, write the statistics however the run ends, and print the summary."""
    outputs = Outputs("stream")
    stats_at = plan.stats
    with phase(f"preparing {runner.name}"):
        runner.activate()
    with runner:
        info = {
            "backend": runner.name,
            "model": runner.source,
            "device": plan.model.device,
            "precision": plan.model.precision or "default",
        }
        run = open_run(pairs, runner, batch, info)
        each = pair_stats(run, pairs)
        for spec, pair in zip(
            plan.pairs, pairs, strict=True
        ):  # exported, and served by browser views
            stats = each[pair.name]
            stats.info["registration"] = str(spec.registration) if spec.registration else None
            stats.info["codecs"] = pair.sink.codecs()
            if metrics is not None:
                metrics.add_pair(pair.name, stats)
            pair.sink.attach(stats, metrics)
        show = console.is_terminal if plan.live is None else plan.live
        try:
            with (
                runtime_logging(),
                live_view(show, run.stats, _label(plan, pairs)) as update,
                stop_on_signals(stop),
            ):
                run.run(stop, update)
        finally:
            if plan.stats is not None:
                stats_at = outputs.write(plan.stats, run.stats.write_json, "the statistics")
                # a run that failed ends with its own error: say here where the statistics went
                if outputs.kept and sys.exc_info()[0] is not None:
                    notice(f"warning: {outputs.kept[0]}")
    summary(run.stats, stats_at)
    outputs.finish()
    return run.stats


def _label(plan: StreamPlan, pairs: list[CameraPair]) -> str:
    """The run's first progress line."""
    if not plan.named:
        spec = plan.pairs[0]
        return f"fusing {spec.vis} + {spec.ir} -> {pairs[0].sink.name}"
    return f"fusing {len(pairs)} pairs: " + ", ".join(
        f"{pair.name} -> {pair.sink.name}" for pair in pairs
    )


def _exit_status(plan: StreamPlan, stats: StreamStats, stop: StopFlag) -> None:
    """Raise the run's exit code when it is not 0, after one ``error:`` line per pair (named
    pairs) or for the run that fused nothing."""
    if stop.reason is not None and stop.reason.startswith("signal "):
        raise typer.Exit(signal_exit_code(signal.Signals[stop.reason.split()[1]]))
    if isinstance(stats, RunStats):
        if stats.counts.written == 0:
            typer.echo("error: no frame was fused (the counts above say why)", err=True)
            raise typer.Exit(1)
        return
    failed = stats.failed()
    empty = [name for name, pair in stats.pairs.items() if pair.counts.written == 0]
    for name, message in failed.items():
        typer.echo(f"error: pair {name}: {message}", err=True)
    for name in empty:
        if name not in failed:
            typer.echo(f"error: pair {name} fused no frame (its counts above say why)", err=True)
    if failed or empty:
        raise typer.Exit(1)


def _metrics(plan: StreamPlan) -> StreamMetrics | None:
    """The run's Prometheus metrics when ``--metrics-port`` or an ``http://`` output asks for
    them, served from now on (and said where, in one line)."""
    served = any(out.scheme == "http" for spec in plan.pairs for out in spec.outs)
    metrics = open_metrics(plan.metrics_address, served)
    if metrics is not None and metrics.url is not None:
        notice(f"Prometheus metrics at {metrics.url}")
    return metrics


def _set_up(
    plan: StreamPlan,
    registrations: dict[str, Registration | None],
    pairs: list[CameraPair],
) -> None:
    """Append each pair of ``plan``, its sources and outputs opened (served outputs listen
    from now on), to ``pairs`` (which then holds the pairs opened before a failure)."""
    total = len(plan.pairs)
    progress = (
        phase(f"setting up {total} pairs", lambda: f"{len(pairs)} of {total} pairs set up")
        if plan.named
        else contextlib.nullcontext()
    )
    with progress:
        for spec in plan.pairs:
            where = f"pair {spec.name}: " if plan.named else ""
            try:
                gain = ThermalGain(
                    spec.ir_norm, spec.ir_percentiles, spec.ir_smoothing, spec.ir_range
                )
            except ValueError as err:
                raise FnetError(f"{where}IR gain: {err}") from None
            vis, ir = open_source(spec.vis, spec.fps), open_source(spec.ir, spec.fps)
            pairs.append(
                CameraPair(
                    spec.name,
                    vis,
                    ir,
                    _open_sinks(spec.outs, spec.out_fps, plan.encoder),
                    Registrar(registrations[spec.name], spec.size),
                    gain,
                    StreamOptions(
                        max_skew=None if spec.max_skew_ms is None else spec.max_skew_ms / 1000.0,
                        ir_offset=spec.ir_offset_ms / 1000.0,
                        luminance=luminance_of(spec.color),
                        layout=spec.layout,
                        max_consecutive_errors=plan.max_errors,
                        reconnect_timeout=plan.reconnect_timeout,
                    ),
                )
            )


def _open_sinks(uris: tuple[URI, ...], fps: float | None, encoder: str | None) -> Sink:
    """One sink per output (a :class:`TeeSink` over them when there are several); outputs
    already opened (served ones listen at once) are closed again if a later one fails."""
    sinks: list[Sink] = []
    try:
        for uri in uris:
            sinks.append(open_sink(uri, fps, encoder if uri.scheme == "rtsp" else None))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks[0] if len(sinks) == 1 else TeeSink(sinks)


def _check_frame_memory(spec: PairSpec, device: str) -> None:
    """A single pair of a given ``--size`` on a CPU: refuse a frame that does not fit in memory
    (the model runs on whole frames)."""
    if spec.size is None or device != "cpu":
        return
    width, height = spec.size
    require_memory(
        inference_bytes(ModelConfig(), height, width),
        f"--size {width}x{height}",
        "give a smaller --size (the model runs on whole frames)",
    )


def max_batch_for(plan: StreamPlan) -> int:
    """The most frames per model call of named pairs: ``--max-batch``, or by default at most
    :data:`DEFAULT_MAX_BATCH` (a stop waits for the call in progress), and on a CPU no more than
    fit in the available memory at the largest frame size known before the run (``size``, or the
    first frame of a file or folder source; a live source's size is known once it runs).

    Raises:
        FnetError: a batch of ``--max-batch`` frames, or a single frame, does not fit in memory;
            one line with the estimate and the largest batch that fits.
    """
    given = plan.batch.max_batch
    device = plan.model.device
    wanted = given or min(len(plan.pairs), DEFAULT_MAX_BATCH.get(device, DEFAULT_MAX_BATCH_GPU))
    if device != "cpu":
        return wanted
    counts: dict[tuple[int, int], int] = {}
    for spec in plan.pairs:
        size = spec.size or _first_frame_size(spec.vis)
        if size is not None:
            counts[size] = counts.get(size, 0) + 1
    if not counts:
        return wanted
    (width, height), count = max(counts.items(), key=lambda item: item[0][0] * item[0][1])
    batch = min(wanted, count)
    needed = inference_bytes(ModelConfig(), height, width, batch)
    available = available_memory()
    if available is None or needed <= available:
        return wanted
    fitting = max(
        (
            b
            for b in range(batch, 0, -1)
            if inference_bytes(ModelConfig(), height, width, b) <= available
        ),
        default=0,
    )
    what = f"batches of {batch} frames of {width}x{height}"
    if fitting == 0:
        require_memory(needed, f"a frame of {width}x{height}", "give a smaller size")
    if given is not None:
        raise FnetError(
            f"--max-batch {given}: {what} need about {gib(needed)} of memory, {gib(available)} "
            f"is available: give --max-batch {fitting} or less"
        )
    notice(
        f"batches of at most {fitting} frames: {what} would need about {gib(needed)} of memory, "
        f"{gib(available)} is available (--max-batch sets the size)"
    )
    return fitting


def _first_frame_size(uri: URI) -> tuple[int, int] | None:
    """``(width, height)`` of a file or folder source's first frame, read from its header
    (folders of PNG or JPEG frames) or by OpenCV (video files); ``None`` when unknown."""
    if uri.scheme == "dir":
        frames = sorted(
            path for path in uri.path.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES
        )
        return image_size(frames[0]) if frames else None
    if uri.scheme != "file":
        return None
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(uri.path), cv2.CAP_FFMPEG)
        try:
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            capture.release()
    return (width, height) if width > 0 and height > 0 else None
