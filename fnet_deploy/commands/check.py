"""``fnet-deploy check``: an exported model against the PyTorch reference on your own images."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from fnet_deploy.backends.base import Runner
from fnet_deploy.commands.common import (
    WEIGHTS_FILES,
    BackendOption,
    ColorOption,
    RunDeviceOption,
    luminance_of,
    phase,
    progress_bar,
    reports_errors,
)
from fnet_deploy.export.parity import (
    DEFAULT_TOLERANCE,
    ERROR_STATS,
    ErrorStat,
    ErrorStats,
    ParityReport,
    compare_runners,
    iter_pairs,
)
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.select import open_runner
from fnet_deploy.model.weights import file_sha256, resolve_weights


def _recorded(runner: Runner) -> tuple[str, str]:
    """(precision, weights sha256) the model records about itself (``""`` if unknown)."""
    from fnet_deploy.backends.onnx_runner import OnnxRunner

    if isinstance(runner, OnnxRunner):
        return runner.precision, runner.metadata.get("fnet_deploy.weights_sha256", "")
    info = getattr(runner, "info", None)
    if info is not None:
        return str(info.precision), str(info.weights_sha256)
    return str(getattr(runner, "precision", "fp32")), ""


def _how(runner: Runner, precision: str) -> str:
    """How the model ran, for the report title: backend, precision, emulation."""
    emulated = ", float16 emulated on CPU" if getattr(runner, "emulated", False) else ""
    return f"{runner.name}, {precision}{emulated}"


def _print_report(
    out: Console, title: str, report: ParityReport, chosen: ErrorStat, limit: float
) -> bool:
    """Print one model's table and verdict line; True when it passed."""
    table = Table(title=title)
    for column in ("pair", "max", "mean", "p99.9", "within 2", "NaN/inf"):
        table.add_column(column, justify="left" if column == "pair" else "right")
    rows: list[tuple[str, ErrorStats]] = [*report.per_pair]
    if len(rows) > 1:
        rows.append(("all pixels", report.overall))
    for name, stats in rows:
        table.add_row(
            name,
            f"{stats.max:.4f}",
            f"{stats.mean:.5f}",
            f"{stats.quantile(0.999):.4f}",
            f"{100 * stats.fraction_within(2.0):.3f} %",
            str(stats.nonfinite),
        )
    out.print(table)
    passed = report.overall.passed(chosen, limit)
    out.print(
        f"{'PASS' if passed else 'FAIL'}: {chosen} {report.overall.stat(chosen):.4f} grey levels "
        f"(tolerance {limit:g}), {report.overall.nonfinite} NaN/inf pixels, "
        f"{len(report.per_pair)} pair(s)"
    )
    return passed


@reports_errors
def check(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="Model(s) to check: .onnx (FP32/FP16), .engine/.plan, or weights; several "
            "models share one reference run.",
            show_default=False,
        ),
    ],
    ir: Annotated[Path, typer.Option(help="Infrared image, or a folder of them.")],
    vis: Annotated[Path, typer.Option(help="Visible image, or a folder (paired by file name).")],
    weights: Annotated[
        Path | None,
        typer.Option(
            help=f"{WEIGHTS_FILES} of the PyTorch reference, which may differ from those the "
            "models were exported from (default: the package's own weights)."
        ),
    ] = None,
    backend: BackendOption = None,
    device: RunDeviceOption = "cpu",
    reference_device: Annotated[
        str,
        typer.Option(
            help="Where PyTorch computes the reference (training form, float32): cpu, cuda or "
            "cuda:N."
        ),
    ] = "cpu",
    color: ColorOption = "keep",
    stat: Annotated[
        str, typer.Option(help="Error statistic compared with --tolerance: max, mean or p99.9.")
    ] = "p99.9",
    tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Pass if the statistic is at most this many grey levels "
            "(default: 0.5 for fp32, 2 for fp16 and int8 models).",
        ),
    ] = None,
    emulate_on_cpu: Annotated[
        bool,
        typer.Option(
            help="How an FP16 ONNX model runs on --device cpu (its precision is the model's "
            "own): as float16 emulation, every tensor rounded to float16, since ONNX Runtime's "
            "CPU provider computes float16 convolutions in float32 and would hide float16 "
            "error; --no-emulate-on-cpu runs it as the provider does."
        ),
    ] = True,
) -> None:
    """Compare exported models with the PyTorch reference (training form), in grey levels.

    Reports max / mean / p99.9 of |clamp(model) - clamp(reference)| * 255 per pair and over all
    pixels, and the share of pixels within 2 grey levels; exits 1 when, for any model, the chosen
    statistic exceeds the tolerance or an output is NaN/inf.
    """
    if stat not in ERROR_STATS:
        raise FnetError(f"--stat must be one of {', '.join(ERROR_STATS)}, got {stat!r}")
    chosen = cast(ErrorStat, stat)
    weights_path = resolve_weights(weights)
    candidates = [
        open_runner(model, backend, device, emulate_fp16=emulate_on_cpu) for model in models
    ]
    reference = open_runner(None, "torch-training", reference_device, "fp32", weights_path)
    out = Console()
    luminance = luminance_of(color)
    pairs = list(iter_pairs(ir, vis, luminance))
    with ExitStack() as stack:
        with phase("loading the models"):
            for runner in (*candidates, reference):
                stack.enter_context(runner)
        recorded = [_recorded(candidate) for candidate in candidates]
        for model, (_, sha) in zip(models, recorded, strict=True):
            if sha and sha != file_sha256(weights_path):
                typer.echo(
                    f"warning: {model.name} was exported from other weights (sha256 "
                    f"{sha[:12]}...) than {weights_path.name}",
                    err=True,
                )
        names = ", ".join(model.name for model in models)
        with progress_bar() as progress:
            task = progress.add_task(f"checking {names}", total=len(pairs))
            reports = compare_runners(
                reference, candidates, pairs, on_pair=lambda _: progress.advance(task)
            )
    failed = []
    for model, candidate, report, (precision, _) in zip(
        models, candidates, reports, recorded, strict=True
    ):
        label = _how(candidate, precision)
        limit = DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["fp32"])
        limit = tolerance if tolerance is not None else limit
        title = f"{model.name} ({label}) vs PyTorch fp32, --color {color}"
        if not _print_report(out, title, report, chosen, limit):
            failed.append(model.name)
    if failed:
        if len(models) > 1:
            out.print(f"FAILED: {', '.join(failed)}")
        raise typer.Exit(1)
