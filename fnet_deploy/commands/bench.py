"""``fnet-deploy bench``: latency and throughput per backend, precision, size (W x H) and batch."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fnet_deploy.backends.device import torch_device
from fnet_deploy.bench.plots import plot_latency
from fnet_deploy.bench.targets import TARGET_NAMES
from fnet_deploy.commands.common import (
    INTERRUPTED_EXIT,
    check_output,
    cleans_up_on_signals,
    console,
    parse_size,
    phase,
    progress_bar,
    reports_errors,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.memory import require_memory
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.cost import inference_bytes
from fnet_deploy.model.weights import load_fnet

if TYPE_CHECKING:  # PyTorch is imported by the benchmark itself, not with `bench --help`
    from fnet_deploy.bench.matrix import CellResult
    from fnet_deploy.bench.peaks import Peaks


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _batches(text: str) -> list[int]:
    try:
        values = [int(part) for part in _split(text)]
    except ValueError:
        raise FnetError(f"--batch expects sizes like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise FnetError(f"--batch expects positive sizes like 1,2,4, got {text!r}")
    return values


def _choices(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    values = _split(text)
    unknown = [v for v in values if v not in allowed]
    if not values or unknown:
        got = repr(unknown[0]) if unknown else "nothing"
        raise FnetError(
            f"{option}: expected a comma-separated list of {', '.join(allowed)}, got {got}"
        )
    return values


def _shapes(text: str) -> list[tuple[int, int]]:
    """``--size`` (comma-separated WIDTHxHEIGHT) -> (height, width) per cell."""
    return [parse_size(part, "--size")[::-1] for part in _split(text)]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _describe_peaks(peaks: Peaks) -> str:
    flops, matmul, conv = (
        f"{v / 1e9:,.0f}"
        for v in (peaks.flops_per_s, peaks.matmul_flops_per_s, peaks.conv_flops_per_s)
    )
    return (
        f"peaks on {peaks.device} ({peaks.dtype}): {flops} GFLOP/s (matmul {matmul}, "
        f"9x9 conv {conv}), {peaks.bytes_per_s / 1e9:,.0f} GB/s copy"
    )


def _table(results: list[CellResult]) -> Table:
    table = Table(title="FNet latency beside the floors (FLOPs / peak compute, bytes / bandwidth)")
    headers = ["backend", "prec", "HxW", "N", "p50 ms", "p95 ms", "p99 ms", "dev ms", "fps"]
    headers += ["vs training form"]
    headers += ["GFLOP"]
    headers += ["compute floor ms", "memory floor ms", "of floor"]
    for column in headers:
        table.add_column(
            column, justify="left" if column in ("backend", "prec", "HxW") else "right"
        )
    for r in results:
        c = r.cell
        row = [c.backend, c.precision, f"{c.height}x{c.width}", str(c.batch)]
        if r.skipped or r.error:
            table.add_row(*row, "skipped" if r.skipped else "failed", *[""] * 9)
            continue
        fraction = r.fraction_of_floor
        row += [_fmt(r.median_ms), _fmt(r.p95_ms), _fmt(r.p99_ms)]
        row += [_fmt(r.device_median_ms, 2), _fmt(r.fps, 2)]
        row += ["-" if r.speedup is None else f"{r.speedup:.2f}x"]
        row += [_fmt(r.gflop), _fmt(r.compute_floor_ms), _fmt(r.memory_floor_ms)]
        row += ["-" if fraction is None else f"{100 * fraction:.0f}%"]
        table.add_row(*row)
    return table


@reports_errors
@cleans_up_on_signals
def bench(
    backend: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated backends: {', '.join(TARGET_NAMES)} (torch: the deploy form, "
            "torch-training: the training form, the baseline of the speed-up column)."
        ),
    ] = "torch-training,torch",
    precision: Annotated[
        str,
        typer.Option(
            help="Comma-separated: fp32, fp16, int8 (the Q/DQ model of export --int8; "
            "onnxruntime and tensorrt backends)."
        ),
    ] = "fp32",
    size: Annotated[
        str, typer.Option(help="Comma-separated WIDTHxHEIGHT sizes, e.g. 640x480,1280x720.")
    ] = "640x480",
    batch: Annotated[
        str, typer.Option(help="Comma-separated batch sizes (camera pairs per call).")
    ] = "1",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Weights to time (speed does not depend on their values; default: random init)."
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls per cell.")] = 2,
    iterations: Annotated[int, typer.Option(min=1, help="Timed calls per cell (at most).")] = 10,
    max_seconds: Annotated[
        float,
        typer.Option(
            min=0.001, max=86_400.0, help="Stop timing a cell after this many seconds (<= a day)."
        ),
    ] = 30.0,
    peaks: Annotated[
        bool, typer.Option(help="Measure the compute and bandwidth peaks for the floors.")
    ] = True,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the latency distributions to this PNG (matplotlib).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write all results as JSON here.")
    ] = None,
) -> None:
    """Benchmark FNet: median/p95/p99 latency and fps per cell, beside the hardware's floors."""
    import torch  # here, not with `bench --help`

    from fnet_deploy.bench.matrix import (
        add_speedups,
        cells,
        machine_info,
        require_backend,
        run_cell,
    )
    from fnet_deploy.bench.peaks import peaks_per_precision
    from fnet_deploy.model.fnet import FNet

    if json_out is not None:
        check_output(json_out, "--json", suffixes=(".json",), inputs=(weights,))
    if plot is not None:
        check_output(plot, "--plot", suffixes=(".png", ".pdf", ".svg"), inputs=(weights, json_out))
    compute_device = torch_device(device)
    if compute_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # each cell has one shape: let cuDNN pick per shape
    if threads is not None:
        torch.set_num_threads(threads)
    backends = _choices(backend, "--backend", TARGET_NAMES)
    precisions = _choices(precision, "--precision", ("fp32", "fp16", "int8"))
    matrix = list(
        cells(
            backends,
            precisions,
            _shapes(size),
            _batches(batch),
        )
    )
    for name in backends:
        require_backend(name)
    if plot is not None:
        require("matplotlib")
    model = load_fnet(weights)[0] if weights is not None else FNet().eval()
    if compute_device.type == "cpu":
        for cell in matrix:
            require_memory(
                inference_bytes(model.config, cell.height, cell.width, cell.batch),
                f"--size {cell.width}x{cell.height} --batch {cell.batch}",
                "give a smaller --size or --batch",
            )
    measured: dict[str, Peaks] = {}  # precision -> the peaks of its dtype
    if peaks:
        with phase("measuring compute and memory-bandwidth peaks", spinner=True):
            measured = peaks_per_precision(precisions, str(compute_device))
        for described in dict.fromkeys(_describe_peaks(p) for p in measured.values()):
            console.print(described)
    results: list[CellResult] = []
    interrupted = False
    outputs = Outputs("bench")
    json_target = json_out

    def write_json(complete: bool) -> None:
        """The results so far, after every cell once one has run (a stopped or failing run
        keeps the finished cells; a matrix of skipped cells alone writes nothing)."""
        nonlocal json_target
        if json_target is None or all(r.skipped for r in results):
            return
        add_speedups(results)
        document = {
            "machine": machine_info(str(compute_device)),
            "weights": str(weights) if weights else "random init",
            "peaks": {name: asdict(p) for name, p in measured.items()} or None,
            "cells": len(matrix),
            "complete": complete,
            "results": [r.to_dict() for r in results],
        }
        text = json.dumps(document, indent=2)
        json_target = outputs.write(
            json_target, lambda path: write_text_atomic(path, text), "the results"
        )

    with tempfile.TemporaryDirectory(prefix="fnet-bench-") as work, progress_bar() as progress:
        task = progress.add_task("benchmarking", total=len(matrix))
        try:
            for cell in matrix:
                progress.update(
                    task,
                    description=f"{cell.backend} {cell.precision} {cell.height}x{cell.width} "
                    f"b{cell.batch}",
                )
                results.append(
                    run_cell(
                        cell,
                        model,
                        str(compute_device),
                        measured.get(cell.precision),
                        warmup,
                        iterations,
                        max_seconds,
                        Path(work),
                    )
                )
                write_json(complete=False)
                progress.advance(task)
        except KeyboardInterrupt:
            interrupted = True
    add_speedups(results)
    out = Console()
    out.width = max(out.width, 160)
    out.print(_table(results))
    reasons = sorted({r.skipped for r in results if r.skipped})
    for reason in reasons:
        out.print(f"skipped: {reason}", markup=False)
    failed = [r for r in results if r.error]
    for r in failed:
        c = r.cell
        out.print(
            f"failed: {c.backend} {c.precision} {c.height}x{c.width} b{c.batch}: {r.error}",
            markup=False,
        )
    if results and not interrupted and all(r.skipped for r in results):
        raise FnetError(f"no benchmark cell could run here: {'; '.join(reasons)}")
    if plot is not None:
        latencies = {
            f"{r.cell.backend} {r.cell.precision} {r.cell.height}x{r.cell.width} b{r.cell.batch}": [
                1e3 * s for s in r.samples
            ]
            for r in results
            if r.samples
        }
        written = outputs.write(plot, lambda path: plot_latency(latencies, path), "the plot")
        if written == plot:
            console.print(f"wrote {plot}")
    write_json(complete=not interrupted)
    if json_out is not None and json_target == json_out:
        console.print(f"wrote {json_out}")
    outputs.finish()
    if interrupted:
        console.print(f"interrupted: {len(results)} of {len(matrix)} cells finished (shown above)")
        raise typer.Exit(INTERRUPTED_EXIT)
    if failed:
        raise FnetError(
            f"{len(failed)} of {len(matrix)} benchmark cells failed (the others ran; their "
            f"errors are in the table{' and the JSON' if json_out else ''}): {failed[0].error}"
        )
