"""``fnet-deploy stream``: fuse a visible and an infrared video stream, live.

The command reads its options into a :class:`~fnet_deploy.commands.stream_run.StreamPlan`
(every value checked before any work) and runs it
(:func:`~fnet_deploy.commands.stream_run.run_stream`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fnet_deploy.assets import asset_path
from fnet_deploy.commands.common import (
    BackendOption,
    ColorOption,
    IrNormOption,
    IrPercentilesOption,
    IrRangeOption,
    LayoutOption,
    ModelOption,
    PrecisionOption,
    RunDeviceOption,
    WeightsOption,
    reports_errors,
)
from fnet_deploy.commands.pair_specs import MAX_RECONNECT_S, PairSpec, one_pair, read_pairs
from fnet_deploy.commands.stream_options import (
    DEFAULT_OUT,
    BatchTimeoutMsOption,
    EncoderOption,
    FpsOption,
    IrOffsetMsOption,
    IrOption,
    IrSmoothingOption,
    LiveOption,
    MaxBatchOption,
    MaxErrorsOption,
    MaxSkewMsOption,
    MetricsPortOption,
    OutFpsOption,
    OutOption,
    PairOption,
    PairsOption,
    ReconnectOption,
    RegistrationOption,
    SizeOption,
    StatsOption,
    VisOption,
)
from fnet_deploy.commands.stream_run import StreamPlan, run_stream
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.select import ModelChoice
from fnet_deploy.runtime.multi import DEFAULT_BATCH_TIMEOUT, BatchOptions
from fnet_deploy.runtime.prometheus import parse_metrics_address
from fnet_deploy.runtime.sink_uri import check_encoder_name
from fnet_deploy.runtime.sources import DEFAULT_DIR_FPS

DEFAULT_SEQUENCE = ("sequences", "nato_camp")


def default_sources() -> tuple[str, str, Path]:
    """The shipped visible and IR frame folders (TNO Nato camp, 12 frames) and their
    registration (a 4.5 px shift measured with ``fnet-deploy calibrate``)."""
    folder = asset_path(*DEFAULT_SEQUENCE)
    return f"dir://{folder / 'vi'}", f"dir://{folder / 'ir'}", folder / "registration.json"


@reports_errors
def stream(
    vis: VisOption = None,
    ir: IrOption = None,
    out: OutOption = None,
    weights: WeightsOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: RunDeviceOption = "cpu",
    precision: PrecisionOption = None,
    fps: FpsOption = DEFAULT_DIR_FPS,
    max_skew_ms: MaxSkewMsOption = None,
    ir_offset_ms: IrOffsetMsOption = 0.0,
    registration: RegistrationOption = None,
    size: SizeOption = None,
    color: ColorOption = "keep",
    layout: LayoutOption = "fused",
    ir_norm: IrNormOption = "percentile",
    ir_percentiles: IrPercentilesOption = "1,99",
    ir_range: IrRangeOption = None,
    ir_smoothing: IrSmoothingOption = 0.9,
    stats: StatsOption = None,
    metrics_port: MetricsPortOption = None,
    max_errors: MaxErrorsOption = 10,
    reconnect: ReconnectOption = "30",
    out_fps: OutFpsOption = None,
    live: LiveOption = None,
    encoder: EncoderOption = None,
    pair: PairOption = None,
    pairs: PairsOption = None,
    batch_timeout_ms: BatchTimeoutMsOption = None,
    max_batch: MaxBatchOption = None,
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
    named = bool(pair) or pairs is not None
    defaults = {
        "registration": registration,
        "size": size,
        "fps": fps,
        "out-fps": out_fps,
        "max-skew-ms": max_skew_ms,
        "ir-offset-ms": ir_offset_ms,
        "color": color,
        "layout": layout,
        "ir-norm": ir_norm,
        "ir-percentiles": ir_percentiles,
        "ir-range": ir_range,
        "ir-smoothing": ir_smoothing,
    }
    specs: list[PairSpec]
    if named:
        single = {"--vis": vis, "--ir": ir, "--out": out[0] if out else None}
        specs = read_pairs(pair or [], pairs, single, defaults)
    else:
        batching = {"--max-batch": max_batch, "--batch-timeout-ms": batch_timeout_ms}
        specs = [_single_pair(vis, ir, out, defaults, batching)]
    check_encoder(encoder, specs)
    plan = StreamPlan(
        pairs=tuple(specs),
        named=named,
        model=ModelChoice(model, backend, device, precision, weights),
        stats=stats,
        max_errors=max_errors,
        reconnect_timeout=reconnect_timeout,
        batch=BatchOptions(
            DEFAULT_BATCH_TIMEOUT if batch_timeout_ms is None else batch_timeout_ms / 1000.0,
            max_batch,
        ),
        live=live,
        encoder=None if encoder == "auto" else encoder,
        metrics_address=metrics_address,
    )
    run_stream(plan)


def _single_pair(
    vis: str | None,
    ir: str | None,
    out: list[str] | None,
    defaults: dict[str, Any],
    batching: dict[str, float | None],
) -> PairSpec:
    """The one pair of ``--vis``/``--ir`` (the shipped sequence without them) and every ``--out``.

    Raises:
        FnetError: options for several pairs (``batching``), or only one of --vis and --ir.
    """
    given = [option for option, value in batching.items() if value is not None]
    if given:
        raise FnetError(
            f"{'/'.join(given)}: for several pairs (--pair or --pairs); one pair is fused a "
            "frame at a time"
        )
    if (vis is None) != (ir is None):
        raise FnetError("give both --vis and --ir, or neither (to use the shipped sequence)")
    if vis is None or ir is None:
        vis, ir, shipped = default_sources()
        defaults = {**defaults, "registration": defaults["registration"] or shipped}
    return one_pair(vis, ir, out or [DEFAULT_OUT], defaults)


def parse_reconnect_timeout(text: str) -> float:
    """``--reconnect-timeout-s``: seconds up to a day, or ``0``/``inf``/``forever`` for
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
            f"--reconnect-timeout-s: expected seconds from 0 to {MAX_RECONNECT_S:g}, or inf "
            f"(0 and inf: retry forever), got {text!r}"
        )
    return math.inf if seconds == 0 else seconds


def check_encoder(encoder: str | None, specs: list[PairSpec]) -> None:
    """``--encoder``: a known H.264 encoder, given only with an ``rtsp://`` output to encode.

    Raises:
        FnetError: an unknown encoder, or one that no output would use.
    """
    check_encoder_name(encoder)
    outs = [uri for spec in specs for uri in spec.outs]
    if encoder not in (None, "auto") and all(uri.scheme != "rtsp" for uri in outs):
        raise FnetError(
            f"--encoder {encoder}: only rtsp:// outputs are encoded here, not {outs[0]}"
        )
