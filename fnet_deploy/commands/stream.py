"""``fnet-deploy stream``: fuse a visible and an infrared video stream, live."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from fnet_deploy.assets import asset_path
from fnet_deploy.backends.select import open_runner
from fnet_deploy.bench.cost import inference_bytes
from fnet_deploy.commands.common import (
    BackendOption,
    ColorOption,
    ModelOption,
    PrecisionOption,
    RunDeviceOption,
    check_output,
    console,
    luminance_of,
    notice,
    parse_pair,
    parse_percentiles,
    parse_size,
    phase,
    reports_errors,
    signal_exit_code,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.commands.pair_specs import (
    MAX_DELAY_MS,
    MAX_FPS,
    MAX_RECONNECT_S,
    read_pairs,
)
from fnet_deploy.commands.stream_pairs import RunSettings, stream_pairs
from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.memory import require_memory
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.weights import resolve_weights
from fnet_deploy.runtime.gain import ThermalGain
from fnet_deploy.runtime.gst_pipelines import ENCODER_NAMES
from fnet_deploy.runtime.pipeline import StopFlag, StreamOptions, StreamPipeline, stop_on_signals
from fnet_deploy.runtime.prometheus import (
    SINGLE_PAIR,
    StreamMetrics,
    open_metrics,
    parse_metrics_address,
)
from fnet_deploy.runtime.registration import Registrar, Registration
from fnet_deploy.runtime.sinks import Sink, TeeSink, open_sink
from fnet_deploy.runtime.sources import DEFAULT_DIR_FPS, open_source
from fnet_deploy.runtime.stats import STAGES, RunStats
from fnet_deploy.runtime.uri import URI, parse_uri, sink_overwrites_source
from fnet_deploy.views import Layout

DEFAULT_SEQUENCE = ("sequences", "nato_camp")
DEFAULT_OUT = "fused.mp4"


def default_sources() -> tuple[str, str, Path]:
    """The shipped visible and IR frame folders (TNO Nato camp, 12 frames) and their
    registration (a 4.5 px shift measured with ``fnet-deploy calibrate``)."""
    folder = asset_path(*DEFAULT_SEQUENCE)
    return f"dir://{folder / 'vi'}", f"dir://{folder / 'ir'}", folder / "registration.json"


@reports_errors
def stream(
    vis: Annotated[
        str | None,
        typer.Option(
            help="Visible source: file://clip.mp4, dir://frames/, "
            "v4l2:///dev/video0?width=640&height=512&fps=30&format=Y16, csi://0, "
            "rtsp://...?transport=tcp&latency=200, gst://<pipeline>, or a bare path. "
            "Default: the shipped sequence."
        ),
    ] = None,
    ir: Annotated[str | None, typer.Option(help="Infrared source (same forms as --vis).")] = None,
    out: Annotated[
        list[str] | None,
        typer.Option(
            help="Output: file://out.mp4 (.mp4/.avi/.mkv), dir://frames/, display://0, "
            "rtsp://@:8554/fused (served), rtsp://host/path (pushed), http://@:8080 (browser "
            f"view), gst://<pipeline> or a bare path (default: {DEFAULT_OUT}); repeat it for "
            "several outputs of one run."
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="FNet weights for the torch backend (.safetensors or the published .pth)."
        ),
    ] = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: RunDeviceOption = "cpu",
    precision: PrecisionOption = None,
    fps: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=MAX_FPS,
            help="Frame rate of dir:// sources without fps= or timestamps=.",
        ),
    ] = DEFAULT_DIR_FPS,
    max_skew_ms: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=MAX_DELAY_MS,
            help="Largest time gap between paired frames (default: half the slower "
            "stream's frame period).",
        ),
    ] = None,
    ir_offset_ms: Annotated[
        float,
        typer.Option(
            min=-MAX_DELAY_MS,
            max=MAX_DELAY_MS,
            help="Added to IR timestamps (constant delay between the cameras).",
        ),
    ] = 0.0,
    registration: Annotated[
        Path | None,
        typer.Option(
            help="Calibration JSON from `fnet-deploy calibrate` (IR-to-visible map); default: "
            "none (the shipped one for the shipped sequence)."
        ),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(help="Model input size WxH (default: the registered crop's size)."),
    ] = None,
    color: ColorOption = "keep",
    layout: Annotated[
        Layout,
        typer.Option(help="fused, or a labelled side-by-side / grid of visible, IR and fused."),
    ] = "fused",
    ir_gain: Annotated[
        ThermalNorm,
        typer.Option(help="Gain of IR deeper than 8 bit: percentile, minmax or fixed."),
    ] = "percentile",
    ir_percentiles: Annotated[
        str, typer.Option(help="Low,high percentiles for --ir-gain percentile.")
    ] = "1,99",
    ir_range: Annotated[
        str | None,
        typer.Option(help="Low,high raw counts for --ir-gain fixed (default: the full scale)."),
    ] = None,
    gain_smoothing: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.999, help="Temporal smoothing of the IR gain (0: none; 0.9: ~10 frames)."
        ),
    ] = 0.9,
    stats: Annotated[
        Path | None, typer.Option(help="Write the run's statistics to this JSON file.")
    ] = None,
    metrics_port: Annotated[
        str | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics (path /metrics) while the run lasts, on PORT (every "
            "interface) or HOST:PORT (127.0.0.1:9100: this machine only); port 0 picks a free "
            "one. An http:// output serves them at /metrics too.",
        ),
    ] = None,
    max_errors: Annotated[
        int, typer.Option(min=1, help="Consecutive backend errors that stop the run.")
    ] = 10,
    reconnect: Annotated[
        str,
        typer.Option(
            "--reconnect-timeout",
            help="Seconds a lost live source may take to come back; 0 or inf: retry forever "
            "(backoff capped at 8 s), every outage counted in the stats.",
        ),
    ] = "30",
    out_fps: Annotated[
        float | None,
        typer.Option(
            min=0.001, max=MAX_FPS, help="Frame rate of the output video (default: the visible's)."
        ),
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live", help="Show the live statistics table (default: on a terminal)."
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="H.264 encoder of rtsp:// outputs: nvv4l2h264 (Jetson), nvh264, vaapih264, "
            "v4l2h264, x264, openh264 (default: the best one GStreamer has)."
        ),
    ] = None,
    pair: Annotated[
        list[str] | None,
        typer.Option(
            help="One camera pair of several fused by one model: vis=URI,ir=URI,out=URI, then "
            "if wanted name=..., registration=FILE, size=WxH, ir-offset-ms=... or any other "
            "per-pair option by its name. Repeat for each pair."
        ),
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file with one 'pair' table per pair (the keys of --pair), instead of "
            "--pair."
        ),
    ] = None,
    batch_timeout_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=MAX_DELAY_MS,
            help="With several pairs: how long a batch waits for the other pairs' frames.",
        ),
    ] = 40.0,
    max_batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With several pairs: most frames per model call (default: one per pair, at "
            "most 2 on a CPU and 16 on a GPU, fewer if memory is short; a stop waits for the "
            "call in progress).",
        ),
    ] = None,
) -> None:
    """Fuse a visible and an infrared stream into one video, live.

    Each visible frame is paired with the IR frame nearest in time, registered, fused by FNet
    and written. Without --vis/--ir, fuses the TNO sequence shipped with the package (with its
    registration unless --registration is given).
    With --pair (repeated) or --pairs FILE, fuses several camera pairs with one model, each
    with its own synchronisation, registration and output, batching their frames; options
    such as --registration or --ir-offset-ms then give every pair's default.
    Ctrl-C or SIGTERM stops after the current frame and finalises the output (exit code 130 or
    143, as for any interrupted command); a run that fused no frame exits with 1.
    """
    reconnect_timeout = parse_reconnect_timeout(reconnect)
    metrics_address = None if metrics_port is None else parse_metrics_address(metrics_port)
    if pair or pairs is not None:
        defaults = {
            "registration": registration,
            "size": size,
            "fps": fps,
            "out-fps": out_fps,
            "max-skew-ms": max_skew_ms,
            "ir-offset-ms": ir_offset_ms,
            "color": color,
            "layout": layout,
            "ir-gain": ir_gain,
            "ir-percentiles": ir_percentiles,
            "ir-range": ir_range,
            "gain-smoothing": gain_smoothing,
        }
        specs = read_pairs(
            pair or [],
            pairs,
            {"--vis": vis, "--ir": ir, "--out": out[0] if out else None},
            defaults,
        )
        settings = RunSettings(
            model,
            backend,
            device,
            precision,
            weights,
            stats,
            max_errors,
            reconnect_timeout,
            batch_timeout_ms,
            max_batch,
            live,
            encoder,
            _metrics(metrics_address, [spec.out for spec in specs]),
        )
        try:
            stream_pairs(specs, settings, _runtime_logging)
        finally:
            if settings.metrics is not None:
                settings.metrics.close()
        return
    if max_batch is not None:
        raise FnetError(
            "--max-batch applies to several pairs (--pair or --pairs); one pair is fused a "
            "frame at a time"
        )
    if (vis is None) != (ir is None):
        raise FnetError("give both --vis and --ir, or neither (to use the shipped sequence)")
    if vis is None or ir is None:
        vis, ir, shipped = default_sources()
        registration = registration or shipped
    if stats is not None:
        check_output(stats, "--stats", suffixes=(".json",), inputs=(registration,))
    try:
        gain = ThermalGain(
            ir_gain,
            parse_percentiles(ir_percentiles),
            gain_smoothing,
            parse_pair(ir_range, "--ir-range", "0,4095") if ir_range else None,
        )
    except ValueError as err:
        raise FnetError(f"IR gain: {err}") from None
    vis_uri, ir_uri = parse_uri(vis, "source"), parse_uri(ir, "source")
    out_uris = [parse_uri(text, "sink") for text in out or [DEFAULT_OUT]]
    for number, out_uri in enumerate(out_uris):
        overwritten = sink_overwrites_source(out_uri, [vis_uri, ir_uri])
        if overwritten is not None:
            raise InputError(
                out_uri.path, f"would overwrite the input {overwritten}; choose another --out"
            )
        if sink_overwrites_source(out_uri, out_uris[:number]) is not None:
            raise InputError(out_uri.path, "is given twice as --out")
    vis_source = open_source(vis_uri, fps)
    ir_source = open_source(ir_uri, fps)
    sink = _open_sinks(out_uris, out_fps, encoder)
    model_size = _parse_size(size)
    if model_size is not None and device == "cpu":
        require_memory(
            inference_bytes(ModelConfig(), model_size[1], model_size[0]),
            f"--size {size}",
            "give a smaller --size (the model runs on whole frames)",
        )
    registrar = Registrar(Registration.load(registration) if registration else None, model_size)
    options = StreamOptions(
        max_skew=None if max_skew_ms is None else max_skew_ms / 1000.0,
        ir_offset=ir_offset_ms / 1000.0,
        luminance=luminance_of(color),
        layout=layout,
        max_consecutive_errors=max_errors,
        reconnect_timeout=reconnect_timeout,
    )
    run_stats = RunStats()
    stop = StopFlag()
    runner = open_runner(model, backend, device, precision, weights, notify=notice)
    try:
        metrics = _metrics(metrics_address, out_uris)
    except BaseException:
        sink.close()  # a served output listens already
        raise
    if metrics is not None:
        metrics.add_pair(SINGLE_PAIR, run_stats)
    sink.attach(run_stats, metrics)
    outputs = Outputs("stream")
    stats_at = stats
    try:
        with phase(f"preparing {runner.name}"):
            runner.activate()
        with runner:
            run_stats.info.update(
                {
                    "backend": runner.name,
                    "model": str(model or resolve_weights(weights)),
                    "device": device,
                    "precision": precision or "default",
                    "registration": str(registration) if registration else None,
                    "codecs": sink.codecs(),
                }
            )
            pipeline = StreamPipeline(
                vis_source, ir_source, runner, sink, registrar, gain, options, run_stats
            )
            show = console.is_terminal if live is None else live
            try:
                with (
                    _runtime_logging(),
                    _live_view(
                        show, run_stats, f"fusing {vis_uri} + {ir_uri} -> {sink.name}"
                    ) as update,
                    stop_on_signals(stop),
                ):
                    pipeline.run(stop, update)
            finally:
                if stats is not None:
                    stats_at = outputs.write(stats, run_stats.write_json, "the statistics")
                    # a run that failed ends with its own error: say here where the statistics went
                    if outputs.kept and sys.exc_info()[0] is not None:
                        notice(f"warning: {outputs.kept[0]}")
    finally:
        if metrics is not None:
            metrics.close()
    _summary(run_stats, stats_at)
    outputs.finish()
    if run_stats.stopped_by.startswith("signal "):
        raise typer.Exit(signal_exit_code(signal.Signals[run_stats.stopped_by.split()[1]]))
    if run_stats.counts.written == 0:
        typer.echo("error: no frame was fused (the counts above say why)", err=True)
        raise typer.Exit(1)


def parse_reconnect_timeout(text: str) -> float:
    """``--reconnect-timeout``: seconds up to a day, or ``0``/``inf``/``forever`` for
    ``math.inf`` (retry forever)."""
    word = text.strip().lower()
    if word in ("inf", "infinity", "forever"):
        return math.inf
    try:
        seconds = float(word)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= MAX_RECONNECT_S:
        raise FnetError(
            f"--reconnect-timeout: expected seconds from 0 to {MAX_RECONNECT_S:g}, or inf "
            f"(0 and inf: retry forever), got {text!r}"
        )
    return math.inf if seconds == 0 else seconds


def _open_sinks(uris: list[URI], fps: float | None, encoder: str | None) -> Sink:
    """One sink per ``--out`` (a :class:`TeeSink` over them when there are several); outputs
    already opened (served ones listen at once) are closed again if a later one fails.
    ``--encoder`` is checked once and applies to the ``rtsp://`` outputs."""
    if encoder not in (None, "auto", *ENCODER_NAMES):
        choices = ", ".join(ENCODER_NAMES)
        raise FnetError(f"--encoder: unknown encoder {encoder!r} (choose from auto, {choices})")
    if encoder not in (None, "auto") and all(uri.scheme != "rtsp" for uri in uris):
        raise FnetError(
            f"--encoder {encoder}: only rtsp:// outputs are encoded here, not {uris[0]}"
        )
    sinks: list[Sink] = []
    try:
        for uri in uris:
            sinks.append(open_sink(uri, fps, encoder if uri.scheme == "rtsp" else None))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks[0] if len(sinks) == 1 else TeeSink(sinks)


def _metrics(address: tuple[str, int] | None, outputs: list[URI]) -> StreamMetrics | None:
    """The run's Prometheus metrics when ``--metrics-port`` or an ``http://`` output asks for
    them, served on ``address`` from now on (and said where, in one line)."""
    metrics = open_metrics(address, any(uri.scheme == "http" for uri in outputs))
    if metrics is not None and metrics.url is not None:
        notice(f"Prometheus metrics at {metrics.url}")
    return metrics


def _parse_size(text: str | None) -> tuple[int, int] | None:
    return None if text is None else parse_size(text, "--size", minimum=8)


@contextlib.contextmanager
def _runtime_logging() -> Iterator[None]:
    """Show the runtime's messages (reconnections, skipped frames) above the live view; without
    a terminal, as plain lines (``stream: <message>``)."""
    logger = logging.getLogger("fnet_deploy.runtime")
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("stream: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextlib.contextmanager
def _live_view(
    show: bool, run_stats: RunStats, label: str
) -> Iterator[Callable[[RunStats], None] | None]:
    """The pipeline's progress call: a rich Live table of the statistics when ``show``; without
    a terminal, also plain lines (``label``, then :func:`progress_line` every few seconds), read
    from the counts that the pipeline brings up to date before each call."""
    with contextlib.ExitStack() as stack:
        view = None
        if show:
            view = stack.enter_context(Live(console=console, refresh_per_second=4, transient=True))
        lines = stack.enter_context(phase(label, lambda: progress_line(run_stats)))
        if view is None and lines is None:
            yield None
            return

        def update(latest: RunStats) -> None:
            if view is not None:
                view.update(stats_view(latest))

        yield update


def progress_line(run_stats: RunStats) -> str:
    """One line of a run's progress: frames fused, throughput and where the others went."""
    counts = run_stats.counts
    return (
        f"{counts.written} fused of {counts.vis_read} visible frames read, "
        f"{run_stats.throughput:.2f} fps, dropped live {counts.vis_dropped_live}, "
        f"unpaired {counts.vis_unpaired}, pending {counts.vis_pending}, "
        f"backend errors {counts.infer_errors}"
    )


def stats_view(run_stats: RunStats) -> Group:
    """Frame counts, throughput and per-stage latency percentiles as rich renderables."""
    counts = run_stats.counts
    header = Text(
        f"{counts.written} fused  {run_stats.throughput:.2f} fps  "
        f"paired {counts.paired}  unpaired {counts.vis_unpaired}  pending {counts.vis_pending}  "
        f"IR unused {counts.ir_unused}  "
        f"dropped live {counts.vis_dropped_live}/{counts.ir_dropped_live}  "
        f"corrupt {counts.vis_corrupt}/{counts.ir_corrupt}  "
        f"backend errors {counts.infer_errors}  reconnects {counts.reconnects}"
    )
    table = Table("stage (ms)", "p50", "p95", "p99", "max", box=None)
    for stage in STAGES:
        summary = run_stats.latency[stage].summary()
        if summary["count"]:
            table.add_row(stage, *(f"{summary[key]:.1f}" for key in ("p50", "p95", "p99", "max")))
    return Group(header, table)


def _summary(run_stats: RunStats, stats_path: Path | None) -> None:
    console.print(stats_view(run_stats))
    sink = run_stats.info.get("sink", "")
    where = f"; statistics in {stats_path}" if stats_path else ""
    console.print(
        f"{run_stats.counts.written} fused frames -> {sink} in {run_stats.elapsed:.1f} s "
        f"({run_stats.stopped_by}){where}"
    )
