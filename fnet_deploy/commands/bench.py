"""``fnet-deploy bench``: latency and throughput per backend, precision, size (W x H) and batch.

The options become a :class:`~fnet_deploy.bench.plan.BenchPlan`;
:func:`~fnet_deploy.bench.run.run_bench` times it and this module prints what it says, the
table of results included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from fnet_deploy.backends.device import parse_device
from fnet_deploy.bench.plan import (
    PRECISIONS,
    BenchPlan,
    parse_batches,
    parse_choices,
    split_list,
)
from fnet_deploy.bench.run import run_bench
from fnet_deploy.bench.targets import TARGET_NAMES
from fnet_deploy.commands.common import (
    PlainProgress,
    RunDeviceOption,
    WeightsOption,
    check_output,
    cleans_up_on_signals,
    console,
    parse_size,
    phase,
    progress_bar,
    reports_errors,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.signals import INTERRUPTED_EXIT

if TYPE_CHECKING:  # PyTorch is imported by the benchmark itself, not with `bench --help`
    from fnet_deploy.bench.matrix import CellResult


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``--size`` (comma-separated WIDTHxHEIGHT) -> (height, width) per cell, the order of the
    tensors (every size shown is WIDTHxHEIGHT again)."""
    return tuple(parse_size(part, "--size")[::-1] for part in split_list(text))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(results: list[CellResult]) -> Table:
    table = Table(title="FNet latency beside the floors (FLOPs / peak compute, bytes / bandwidth)")
    headers = ["backend", "prec", "WxH", "N", "p50 ms", "p95 ms", "p99 ms", "dev ms", "fps"]
    headers += ["vs training form"]
    headers += ["GFLOP"]
    headers += ["compute floor ms", "memory floor ms", "of floor"]
    for column in headers:
        table.add_column(
            column, justify="left" if column in ("backend", "prec", "WxH") else "right"
        )
    for r in results:
        c = r.cell
        row = [c.backend, c.precision, f"{c.width}x{c.height}", str(c.batch)]
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
            help="Comma-separated precisions to time: fp32, fp16, int8 (the Q/DQ model of "
            "export --precision int8; onnxruntime and tensorrt backends)."
        ),
    ] = "fp32",
    size: Annotated[
        str, typer.Option(help="Comma-separated WIDTHxHEIGHT sizes, e.g. 640x480,1280x720.")
    ] = "640x480",
    batch: Annotated[
        str,
        typer.Option(help="Comma-separated batch sizes N to time, camera pairs per call (1,2,4)."),
    ] = "1",
    device: RunDeviceOption = "cpu",
    weights: WeightsOption = None,
    random_init: Annotated[
        bool,
        typer.Option(
            "--random-init",
            help="Time a randomly initialised FNet instead of --weights (speed does not depend "
            "on the weights' values; no weights file read).",
        ),
    ] = False,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls per cell.")] = 2,
    iterations: Annotated[int, typer.Option(min=1, help="Timed calls per cell (at most).")] = 10,
    max_time_s: Annotated[
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
    if random_init and weights is not None:
        raise FnetError("--random-init times an untrained FNet: give it or --weights, not both")
    parse_device(device, ("cpu", "cuda"), "every bench backend")
    plan = BenchPlan(
        backends=parse_choices(backend, "--backend", TARGET_NAMES),
        precisions=parse_choices(precision, "--precision", PRECISIONS),
        shapes=_shapes(size),
        batches=parse_batches(batch),
        device=device,
        weights=weights,
        random_init=random_init,
        warmup=warmup,
        iterations=iterations,
        max_time_s=max_time_s,
        peaks=peaks,
        threads=threads,
        plot=plot,
        json_out=json_out,
    )
    if json_out is not None:
        check_output(json_out, "--json", suffixes=(".json",), inputs=(weights,))
    if plot is not None:
        check_output(plot, "--plot", suffixes=(".png", ".pdf", ".svg"), inputs=(weights, json_out))
    outputs = Outputs("bench")
    outcome = run_bench(plan, _ConsoleReport(), outputs)
    outputs.finish()
    if outcome.interrupted:
        console.print(
            f"interrupted: {len(outcome.results)} of {outcome.cells} cells finished (shown above)"
        )
        raise typer.Exit(INTERRUPTED_EXIT)
    failed = outcome.failed
    if failed:
        raise FnetError(
            f"{len(failed)} of {outcome.cells} benchmark cells failed (the others ran; their "
            f"errors are in the table{' and the JSON' if json_out else ''}): {failed[0].error}"
        )


class _ConsoleReport:
    """The benchmark's lines on the commands' console (stderr), its progress as a bar (plain
    lines without a terminal) and its results as a table on stdout."""

    def line(self, text: str) -> None:
        """A result line (rich markup)."""
        console.print(text)

    def phase(self, label: str) -> AbstractContextManager[object]:
        """A spinner (progress lines without a terminal) while the work lasts."""
        return phase(label, spinner=True)

    @contextlib.contextmanager
    def cells(self, total: int) -> Iterator[_CellBar]:
        """The progress bar of the matrix."""
        with progress_bar() as progress:
            yield _CellBar(progress, progress.add_task("benchmarking", total=total))

    def results(self, results: list[CellResult]) -> None:
        """The table, then why cells were skipped and how they failed."""
        out = Console()
        out.width = max(out.width, 160)
        out.print(_table(results))
        for reason in sorted({r.skipped for r in results if r.skipped}):
            out.print(f"skipped: {reason}", markup=False)
        for r in results:
            if r.error:
                out.print(f"failed: {r.cell.label()}: {r.error}", markup=False)


class _CellBar:
    """One task of a progress bar, described by the cell it times."""

    def __init__(self, progress: Progress | PlainProgress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def start(self, description: str) -> None:
        """Show the cell that begins."""
        self.progress.update(self.task, description=description)

    def advance(self) -> None:
        """Count the cell done."""
        self.progress.advance(self.task)
