"""Carrying out a :class:`~fnet_deploy.bench.plan.BenchPlan`: the peaks, every cell of the
matrix, then the plot and the JSON of the results.

What can refuse the run (a CUDA device that is not there, a backend or matplotlib not
installed, unreadable weights, a cell too large for this machine's memory) is checked before the
first measurement. The JSON is rewritten after every cell, so that a stopped or failing run
keeps the cells it finished.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fnet_deploy.backends.device import torch_device
from fnet_deploy.bench.plan import BenchPlan
from fnet_deploy.bench.plots import plot_latency
from fnet_deploy.bench.report import BenchReport
from fnet_deploy.export.report import OutputWriter
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.memory import require_memory
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.cost import inference_bytes
from fnet_deploy.model.weights import load_fnet, resolve_weights

if TYPE_CHECKING:  # PyTorch is imported by the run, not with the plan
    import torch

    from fnet_deploy.bench.matrix import Cell, CellResult
    from fnet_deploy.bench.peaks import Peaks
    from fnet_deploy.model.fnet import FNet


@dataclass(frozen=True)
class BenchOutcome:
    """How the run ended: the cells that ran (in matrix order) out of ``cells``, and whether a
    signal stopped it before the last."""

    results: list[CellResult]
    cells: int
    interrupted: bool

    @property
    def failed(self) -> list[CellResult]:
        """The cells whose backend raised (the others ran)."""
        return [r for r in self.results if r.error]


def run_bench(plan: BenchPlan, report: BenchReport, outputs: OutputWriter) -> BenchOutcome:
    """Time every cell of ``plan``, saying so through ``report``, then write the plot and the
    JSON through ``outputs``. A signal (Ctrl-C, SIGTERM) stops the matrix, not the run: the
    cells finished are reported and written.

    Raises:
        FnetError: the run cannot start (see the module doc), or no cell could run here.
    """
    from fnet_deploy.bench.matrix import cells
    from fnet_deploy.bench.peaks import peaks_per_precision

    device = _device(plan)
    matrix = list(
        cells(list(plan.backends), list(plan.precisions), list(plan.shapes), list(plan.batches))
    )
    model = _checked_model(plan, matrix, device)
    measured: dict[str, Peaks] = {}  # precision -> the peaks of its dtype
    if plan.peaks:
        with report.phase("measuring compute and memory-bandwidth peaks"):
            measured = peaks_per_precision(list(plan.precisions), str(device))
        for described in dict.fromkeys(describe_peaks(p) for p in measured.values()):
            report.line(described)
    saved = _ResultsFile(plan, str(device), measured, len(matrix), outputs)
    results, interrupted = _time_cells(plan, matrix, model, str(device), measured, saved, report)
    outcome = BenchOutcome(results, len(matrix), interrupted)
    _finish(plan, outcome, saved, report, outputs)
    return outcome


def _time_cells(
    plan: BenchPlan,
    matrix: list[Cell],
    model: FNet,
    device: str,
    measured: dict[str, Peaks],
    saved: _ResultsFile,
    report: BenchReport,
) -> tuple[list[CellResult], bool]:
    """Time the cells in order, saving the results after each; those that ran, and whether a
    signal stopped the matrix."""
    from fnet_deploy.bench.matrix import run_cell

    results: list[CellResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="fnet-bench-") as work,
        report.cells(len(matrix)) as progress,
    ):
        try:
            for cell in matrix:
                progress.start(cell.label())
                peaks = measured.get(cell.precision)
                timing = (plan.warmup, plan.iterations, plan.max_time_s)
                results.append(run_cell(cell, model, device, peaks, *timing, Path(work)))
                saved.write(results, complete=False)
                progress.advance()
        except KeyboardInterrupt:
            return results, True
    return results, False


def describe_peaks(peaks: Peaks) -> str:
    """The peaks in one line: GFLOP/s (matmul, 9x9 conv) and GB/s."""
    flops, matmul, conv = (
        f"{v / 1e9:,.0f}"
        for v in (peaks.flops_per_s, peaks.matmul_flops_per_s, peaks.conv_flops_per_s)
    )
    return (
        f"peaks on {peaks.device} ({peaks.dtype}): {flops} GFLOP/s (matmul {matmul}, "
        f"9x9 conv {conv}), {peaks.bytes_per_s / 1e9:,.0f} GB/s copy"
    )


def _device(plan: BenchPlan) -> torch.device:
    """The device the cells run on, with PyTorch set up for timing on it.

    Raises:
        FnetError: an unknown device, or CUDA where there is none.
    """
    import torch

    device = torch_device(plan.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # each cell has one shape: let cuDNN pick per shape
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    return device


def _checked_model(plan: BenchPlan, matrix: list[Cell], device: torch.device) -> FNet:
    """The model to time, once every backend (and matplotlib for the plot) is there and, on the
    CPU, every cell fits in memory.

    Raises:
        MissingDependencyError: a backend's package or matplotlib is not installed.
        FnetError: unreadable weights, or a cell larger than this machine's memory.
    """
    from fnet_deploy.bench.matrix import require_backend
    from fnet_deploy.model.fnet import FNet

    for name in plan.backends:
        require_backend(name)
    if plan.plot is not None:
        require("matplotlib")
    model = FNet().eval() if plan.random_init else load_fnet(resolve_weights(plan.weights))[0]
    if device.type == "cpu":
        for cell in matrix:
            require_memory(
                inference_bytes(model.config, cell.height, cell.width, cell.batch),
                f"--size {cell.width}x{cell.height} --batch {cell.batch}",
                "give a smaller --size or --batch",
            )
    return model


class _ResultsFile:
    """The JSON of the results (``--json``), rewritten as cells finish; :attr:`target` is where
    it is (elsewhere if the place asked for failed meanwhile)."""

    def __init__(
        self,
        plan: BenchPlan,
        device: str,
        peaks: dict[str, Peaks],
        cells: int,
        outputs: OutputWriter,
    ) -> None:
        self.plan, self.device, self.peaks, self.cells = plan, device, peaks, cells
        self.outputs = outputs
        self.target = plan.json_out

    def write(self, results: list[CellResult], complete: bool) -> None:
        """The results so far, once a cell has run (a matrix of skipped cells alone writes
        nothing)."""
        from fnet_deploy.bench.matrix import add_speedups, machine_info

        if self.target is None or all(r.skipped for r in results):
            return
        add_speedups(results)
        document = {
            "machine": machine_info(self.device),
            "weights": "random init"
            if self.plan.random_init
            else str(resolve_weights(self.plan.weights)),
            "peaks": {name: asdict(p) for name, p in self.peaks.items()} or None,
            "cells": self.cells,
            "complete": complete,
            "results": [r.to_dict() for r in results],
        }
        text = json.dumps(document, indent=2)
        self.target = self.outputs.write(
            self.target, lambda path: write_text_atomic(path, text), "the results"
        )


def _finish(
    plan: BenchPlan,
    outcome: BenchOutcome,
    saved: _ResultsFile,
    report: BenchReport,
    outputs: OutputWriter,
) -> None:
    """Report the cells, then draw the plot and write the JSON complete (unless stopped).

    Raises:
        FnetError: no cell could run here (every one skipped, none stopped).
    """
    from fnet_deploy.bench.matrix import add_speedups

    results = outcome.results
    add_speedups(results)
    report.results(results)
    if results and not outcome.interrupted and all(r.skipped for r in results):
        reasons = sorted({r.skipped for r in results if r.skipped})
        raise FnetError(f"no benchmark cell could run here: {'; '.join(reasons)}")
    if plan.plot is not None:
        latencies = {r.cell.label(): [1e3 * s for s in r.samples] for r in results if r.samples}
        plot = plan.plot
        written = outputs.write(plot, lambda path: plot_latency(latencies, path), "the plot")
        if written == plot:
            report.line(f"wrote {plot}")
    saved.write(results, complete=not outcome.interrupted)
    if plan.json_out is not None and saved.target == plan.json_out:
        report.line(f"wrote {plan.json_out}")
