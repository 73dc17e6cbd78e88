"""``fnet-deploy stream --pair ... / --pairs FILE``: several camera pairs fused by one model.

The pairs (:mod:`fnet_deploy.commands.pair_specs`) are checked and built before any work; then
:class:`~fnet_deploy.runtime.multi.MultiStream` runs them, batching their frames. Exit codes:
0 when every pair ended at the end of its input having fused frames; 128 + the signal after
SIGINT/SIGTERM; 1 when a pair ended on an error or fused nothing (one ``error:`` line per such
pair; the other pairs' outputs are complete).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fnet_deploy.backends.select import open_runner
from fnet_deploy.bench.cost import inference_bytes
from fnet_deploy.commands.common import (
    check_output,
    console,
    luminance_of,
    notice,
    phase,
    signal_exit_code,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.commands.pair_specs import PairSpec
from fnet_deploy.data.images import IMAGE_SUFFIXES, image_size, quiet_native_stderr
from fnet_deploy.errors import FnetError
from fnet_deploy.memory import available_memory, gib, require_memory
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.weights import resolve_weights
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.multi import BatchOptions, CameraPair, MultiStats, MultiStream
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, stop_on_signals
from fnet_deploy.runtime.registration import Registrar, Registration
from fnet_deploy.runtime.sinks import open_sink
from fnet_deploy.runtime.sources import open_source
from fnet_deploy.runtime.uri import URI

if TYPE_CHECKING:
    from fnet_deploy.runtime.prometheus import StreamMetrics

DEFAULT_MAX_BATCH = {"cpu": 2}
"""Default most frames per model call by device: a stop (SIGTERM, Ctrl-C) waits for the call in
progress, and on this project's 2-core CPU one 360x270 frame of the default model takes 1-3 s
(more under load), so 2 keeps a stop well under 10 s; batches buy no speed on a CPU (the
benchmark in docs/runtime.md, "What batching buys")."""
DEFAULT_MAX_BATCH_GPU = 16
"""Default most frames per call on a GPU, where a frame takes milliseconds."""
STATE_WIDTH = 20
"""Characters of a pair's state shown in the live table (errors are printed whole at the end)."""


@dataclass(frozen=True)
class RunSettings:
    """What the command line sets for the whole run (the same for every pair)."""

    model: Path | None
    backend: str | None
    device: str
    precision: str | None
    weights: Path | None
    stats: Path | None
    max_errors: int
    reconnect_timeout: float
    batch_timeout_ms: float
    max_batch: int | None
    live: bool | None
    encoder: str | None
    metrics: StreamMetrics | None = None
    """The run's Prometheus metrics (served by ``stream``), each pair's added when it is made."""


def stream_pairs(
    specs: list[PairSpec],
    settings: RunSettings,
    runtime_logging: Callable[[], AbstractContextManager[None]],
) -> None:
    """Fuse every pair with one runner, batching their frames; see the module docstring.

    Args:
        specs: the checked pairs.
        settings: the run's settings.
        runtime_logging: shows the runtime's messages while the pairs run.

    Raises:
        FnetError: a problem found before any work (calibration file, memory, backend).
        typer.Exit: the exit code when not 0.
    """
    if settings.stats is not None:
        check_output(
            settings.stats,
            "--stats",
            suffixes=(".json",),
            inputs=tuple(spec.registration for spec in specs),
        )
    max_batch = max_batch_for(specs, settings)
    registrations = {
        spec.name: Registration.load(spec.registration) if spec.registration else None
        for spec in specs
    }
    pairs: list[CameraPair] = []
    with phase(
        f"setting up {len(specs)} pairs", lambda: f"{len(pairs)} of {len(specs)} pairs set up"
    ):
        for spec in specs:
            pairs.append(_camera_pair(spec, registrations[spec.name], settings))
    stop = StopFlag()
    runner = open_runner(
        settings.model,
        settings.backend,
        settings.device,
        settings.precision,
        settings.weights,
        notify=notice,
    )
    outputs = Outputs("stream")
    stats_at = settings.stats
    with phase(f"preparing {runner.name}"):
        runner.activate()
    with runner:
        stats = MultiStats(
            info={
                "backend": runner.name,
                "model": str(settings.model or resolve_weights(settings.weights)),
                "device": settings.device,
                "precision": settings.precision or "default",
            }
        )
        run = MultiStream(
            pairs,
            runner,
            BatchOptions(settings.batch_timeout_ms / 1000.0, max_batch),
            stats,
        )
        for spec in specs:
            stats.pairs[spec.name].info["registration"] = (
                str(spec.registration) if spec.registration else None
            )
        for camera_pair in pairs:  # exported, and served by the browser views among the outputs
            pair_stats = stats.pairs[camera_pair.name]
            pair_stats.info["codecs"] = camera_pair.sink.codecs()
            if settings.metrics is not None:
                settings.metrics.add_pair(camera_pair.name, pair_stats)
            camera_pair.sink.attach(pair_stats, settings.metrics)
        show = console.is_terminal if settings.live is None else settings.live
        label = f"fusing {len(specs)} pairs: " + ", ".join(
            f"{camera_pair.name} -> {camera_pair.sink.name}" for camera_pair in pairs
        )
        try:
            with (
                runtime_logging(),
                _live_view(show, stats, label) as update,
                stop_on_signals(stop),
            ):
                run.run(stop, update)
        finally:
            if settings.stats is not None:
                stats_at = outputs.write(settings.stats, stats.write_json, "the statistics")
                if outputs.kept and sys.exc_info()[0] is not None:
                    notice(f"warning: {outputs.kept[0]}")
    _summary(stats, stats_at)
    outputs.finish()
    if stop.reason is not None and stop.reason.startswith("signal "):
        raise typer.Exit(signal_exit_code(signal.Signals[stop.reason.split()[1]]))
    failed = stats.failed()
    empty = [name for name, pair in stats.pairs.items() if pair.counts.written == 0]
    for name, message in failed.items():
        typer.echo(f"error: pair {name}: {message}", err=True)
    for name in empty:
        if name not in failed:
            typer.echo(f"error: pair {name} fused no frame (its counts above say why)", err=True)
    if failed or empty:
        raise typer.Exit(1)


def _camera_pair(
    spec: PairSpec, registration: Registration | None, settings: RunSettings
) -> CameraPair:
    try:
        gain = ThermalGain(spec.ir_gain, spec.ir_percentiles, spec.gain_smoothing, spec.ir_range)
    except ValueError as err:
        raise FnetError(f"pair {spec.name}: IR gain: {err}") from None
    return CameraPair(
        spec.name,
        open_source(spec.vis, spec.fps),
        open_source(spec.ir, spec.fps),
        open_sink(spec.out, spec.out_fps, settings.encoder),
        Registrar(registration, spec.size),
        gain,
        StreamOptions(
            max_skew=None if spec.max_skew_ms is None else spec.max_skew_ms / 1000.0,
            ir_offset=spec.ir_offset_ms / 1000.0,
            luminance=luminance_of(spec.color),
            layout=spec.layout,
            max_consecutive_errors=settings.max_errors,
            reconnect_timeout=settings.reconnect_timeout,
        ),
    )


def max_batch_for(specs: list[PairSpec], settings: RunSettings) -> int:
    """The most frames per model call: ``--max-batch``, or by default at most
    :data:`DEFAULT_MAX_BATCH` (a stop waits for the call in progress), and on a CPU no more than
    fit in the available memory at the largest frame size known before the run (``size``, or the
    first frame of a file or folder source; a live source's size is known once it runs).

    Raises:
        FnetError: a batch of ``--max-batch`` frames, or a single frame, does not fit in memory;
            one line with the estimate and the largest batch that fits.
    """
    given = settings.max_batch
    wanted = given or min(len(specs), DEFAULT_MAX_BATCH.get(settings.device, DEFAULT_MAX_BATCH_GPU))
    if settings.device != "cpu":
        return wanted
    counts: dict[tuple[int, int], int] = {}
    for spec in specs:
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


@contextlib.contextmanager
def _live_view(
    show: bool, stats: MultiStats, label: str
) -> Iterator[Callable[[MultiStats], None] | None]:
    """The run's progress call: a rich Live table of every pair when ``show``; without a
    terminal, also plain lines (``label``, then :func:`progress_line` every few seconds)."""
    with contextlib.ExitStack() as stack:
        view = None
        if show:
            view = stack.enter_context(Live(console=console, refresh_per_second=4, transient=True))
        lines = stack.enter_context(phase(label, lambda: progress_line(stats)))
        if view is None and lines is None:
            yield None
            return

        def update(latest: MultiStats) -> None:
            if view is not None:
                view.update(pairs_view(latest))

        yield update


def progress_line(stats: MultiStats) -> str:
    """One line of a run's progress: frames fused per pair, throughput, batches."""
    pairs = ", ".join(
        f"{name} {pair.counts.written}"
        + ("" if pair.stopped_by == "running" else f" ({_shorten(pair.stopped_by, STATE_WIDTH)})")
        for name, pair in stats.pairs.items()
    )
    batch = stats.batch
    return (
        f"{stats.written} fused ({pairs}), {stats.throughput:.2f} fps, "
        f"{batch.get('calls', 0)} batches of {batch.get('mean_batch') or 0:.2f} frames on average"
    )


def pairs_view(stats: MultiStats) -> Group:
    """One row per pair (frames fused, fps, unpaired and dropped frames, reconnections, backend
    errors, median end-to-end latency, state) under a line about the batches."""
    batch = stats.batch
    fill = batch.get("fill_ratio")
    header = Text(
        f"{stats.written} fused  {stats.throughput:.2f} fps  "
        f"batches {batch.get('calls', 0)}  mean size {batch.get('mean_batch') or 0:.2f}  "
        f"fill {0.0 if fill is None else fill:.2f}  "
        f"pushed by timeout {batch.get('pushed_by_timeout', 0)}"
    )
    table = Table(
        "pair",
        "fused",
        "fps",
        "unpaired",
        "dropped",
        "reconn.",
        "errors",
        "e2e ms",
        "state",
        box=None,
        padding=(0, 1, 0, 0),
    )
    for name, pair in stats.pairs.items():
        counts = pair.counts
        latency = pair.latency["end_to_end"].summary()
        table.add_row(
            name,
            str(counts.written),
            f"{pair.throughput:.1f}",
            str(counts.vis_unpaired),
            f"{counts.vis_dropped_live}/{counts.ir_dropped_live}",
            str(counts.reconnects),
            str(counts.infer_errors),
            f"{latency['p50']:.0f}" if latency["count"] else "-",
            _shorten(pair.stopped_by, STATE_WIDTH),
        )
    return Group(header, table)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary(stats: MultiStats, stats_path: Path | None) -> None:
    console.print(pairs_view(stats))
    where = f"; statistics in {stats_path}" if stats_path else ""
    console.print(
        f"{stats.written} fused frames from {len(stats.pairs)} pairs in {stats.elapsed:.1f} s "
        f"({stats.stopped_by}){where}"
    )
