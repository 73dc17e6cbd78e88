"""``fnet-deploy eval``: the fusion metrics papers report, for any methods, on paired folders.

The options become an :class:`~fnet_deploy.evaluation.plan.EvalPlan` (refused, before any work,
when they contradict each other); :func:`~fnet_deploy.evaluation.run.run_eval` carries it out
and this module prints what it says, the table of means included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fnet_deploy.commands.common import (
    BackendOption,
    RunDeviceOption,
    check_output,
    console,
    notice,
    phase,
    progress_bar,
    reports_errors,
)
from fnet_deploy.commands.evaluate_options import (
    BaselineOption,
    ConventionOption,
    FusedOption,
    FuseModelOption,
    FuseWeightsOption,
    IrFolderOption,
    MetricGrayOption,
    NameOption,
    PlotOption,
    ResultsOption,
    VisFolderOption,
)
from fnet_deploy.commands.outputs import Outputs
from fnet_deploy.evaluation.plan import DEFAULT_NAME, eval_plan
from fnet_deploy.evaluation.report import Advance
from fnet_deploy.evaluation.run import run_eval
from fnet_deploy.helpers.signals import signal_exit_code
from fnet_deploy.metrics import METRICS
from fnet_deploy.metrics.report import Evaluation


@reports_errors
def eval_command(
    ir: IrFolderOption,
    vis: VisFolderOption,
    fused: FusedOption = None,
    weights: FuseWeightsOption = None,
    model: FuseModelOption = None,
    backend: BackendOption = None,
    name: NameOption = DEFAULT_NAME,
    baseline: BaselineOption = None,
    out: ResultsOption = Path("eval"),
    convention: ConventionOption = "paper",
    metric_gray: MetricGrayOption = "bt601",
    device: RunDeviceOption = "cpu",
    plot: PlotOption = False,
) -> None:
    """Compute EN, SD, SF, AG, MI, CE, SCD, VIF, Qabf, Qcb, SSIM, PSNR for fusion methods."""
    plan = eval_plan(
        ir=ir,
        vis=vis,
        fused=fused or [],
        weights=weights,
        model=model,
        backend=backend,
        name=name,
        baselines=baseline or [],
        out=out,
        convention=convention,
        metric_gray=metric_gray,
        device=device,
        plot=plot,
    )
    check_output(out, "--out", folder=True, inputs=plan.inputs)
    outputs = Outputs("eval")
    outcome = run_eval(plan, _ConsoleReport(), outputs)
    if outcome.stopped is not None:
        typer.echo(
            f"interrupted ({outcome.stopped}): partial results, {outcome.finished} of "
            f"{outcome.total} images, in {outcome.folder / 'results.json'} (.csv, .md)",
            err=True,
        )
        raise typer.Exit(signal_exit_code(outcome.stopped.signum))
    outputs.finish()
    console.print(f"wrote {', '.join(outcome.written)} in {out}")


class _ConsoleReport:
    """The evaluation's lines on the commands' console (stderr), its progress as bars (plain
    lines without a terminal) and its means as a table on stdout."""

    def warning(self, text: str) -> None:
        """``warning: <text>`` on stderr."""
        typer.echo(f"warning: {text}", err=True)

    def notice(self, text: str) -> None:
        """A plain status line."""
        notice(text)

    def phase(self, label: str) -> AbstractContextManager[object]:
        """Progress lines while the work lasts (:func:`phase`)."""
        return phase(label)

    @contextlib.contextmanager
    def steps(self, label: str, total: int) -> Iterator[Advance]:
        """A progress bar of ``total`` steps."""
        with progress_bar() as progress:
            task = progress.add_task(label, total=total)
            yield lambda n: progress.advance(task, n)

    def summary(self, evaluation: Evaluation, speed: dict[str, float]) -> None:
        """The table of means."""
        Console(width=max(Console().width, 160)).print(_summary(evaluation, speed))


def _summary(evaluation: Evaluation, speed: dict[str, float]) -> Table:
    """Each method's mean per metric (arrows: which way is better) and ms per frame."""
    table = Table(
        title=f"means ({evaluation.convention} convention, grey by {evaluation.luminance})"
    )
    table.add_column("method")
    for name in evaluation.metrics:
        table.add_column(
            f"{name} {'↑' if METRICS[name].higher_is_better else '↓'}", justify="right"
        )
    table.add_column("ms/frame", justify="right")
    for method, result in evaluation.methods.items():
        cells = [f"{result.mean[name]:.4f}" for name in evaluation.metrics]
        table.add_row(method, *cells, f"{speed[method]:.1f}" if method in speed else "-")
    return table
