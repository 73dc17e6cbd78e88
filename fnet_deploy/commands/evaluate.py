"""``fnet-deploy eval``: the fusion metrics papers report, for any methods, on paired folders."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from fnet_deploy.backends.device import ANY_KIND, parse_device
from fnet_deploy.commands.common import (
    BackendOption,
    Interrupted,
    check_output,
    console,
    interrupt_on_signals,
    notice,
    phase,
    progress_bar,
    reports_errors,
    signal_exit_code,
)
from fnet_deploy.commands.outputs import OutputFolder, Outputs
from fnet_deploy.data.images import read_ir, read_visible, to_uint8, write_image
from fnet_deploy.data.pairs import Pair, pair_folders
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.optional import require
from fnet_deploy.inference.images import FuseOptions, ImageFuser
from fnet_deploy.inference.select import open_runner
from fnet_deploy.metrics import METRICS
from fnet_deploy.metrics.baselines import BASELINES, Baseline
from fnet_deploy.metrics.inputs import Convention
from fnet_deploy.metrics.plots import plot_metric_bars
from fnet_deploy.metrics.report import (
    Evaluation,
    Luminance,
    evaluate,
    markdown_table,
    pair_methods,
    summarize,
    to_json,
    write_csv,
)


def _fused_dirs(specs: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder) -> {name: folder}."""
    methods: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        path = Path(folder) if sep else Path(spec)
        name = name if sep else path.name
        if name in methods:
            raise FnetError(f"--fused: method name {name!r} given twice; use NAME=DIR")
        methods[name] = path
    return methods


def _fuse_all(
    name: str, pairs: list[Pair], out: OutputFolder, fuse_one: Callable[[Pair], np.ndarray]
) -> float:
    """Fuse every pair with ``fuse_one(pair) -> uint8 image`` into ``fused/<name>/`` of ``out``;
    returns mean ms per frame."""
    spent = 0.0
    with progress_bar() as progress:
        task = progress.add_task(f"fusing with {name}", total=len(pairs))
        for pair in pairs:
            start = time.perf_counter()
            image = fuse_one(pair)
            spent += time.perf_counter() - start
            out.write(
                Path("fused", name, f"{pair.name}.png"),
                functools.partial(write_image, image=image),
            )
            progress.advance(task)
    return 1e3 * spent / max(len(pairs), 1)


def _summary(evaluation: Evaluation, speed: dict[str, float]) -> Table:
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


@reports_errors
def eval_command(
    ir: Annotated[Path, typer.Option(help="Folder of IR (or MRI) source images.")],
    vis: Annotated[Path, typer.Option(help="Folder of visible (or CT/PET/SPECT) source images.")],
    fused: Annotated[
        list[str] | None,
        typer.Option(help="Fused results of a method: NAME=DIR or DIR (repeatable)."),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Fuse on the fly with these FNet weights (method 'fnet').")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Fuse on the fly with an exported model instead: .onnx or TensorRT "
            ".engine/.plan (method 'fnet')."
        ),
    ] = None,
    backend: BackendOption = None,
    name: Annotated[str, typer.Option(help="Method name for --weights / --model.")] = "fnet",
    baseline: Annotated[
        list[str] | None,
        typer.Option(help=f"Classical baselines to fuse on the fly: {', '.join(BASELINES)}."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Folder for results.csv/json/md and fused images.")
    ] = Path("eval"),
    convention: Annotated[
        Convention, typer.Option(help="'paper' reproduces published tables; 'standard' textbook.")
    ] = "paper",
    metric_gray: Annotated[
        Luminance,
        typer.Option(
            help="How colour images become grey for the metrics: BT.601 weights (the papers') "
            "or BT.709."
        ),
    ] = "bt601",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda[:N] (tensorrt[:N]: ONNX Runtime's TensorRT provider)."),
    ] = "cpu",
    plot: Annotated[
        bool, typer.Option(help="Also draw per-metric bar charts (results.png; needs matplotlib).")
    ] = False,
) -> None:
    """Compute EN, SD, SF, AG, MI, CE, SCD, VIF, Qabf, Qcb, SSIM, PSNR for fusion methods."""
    methods = _fused_dirs(fused or [])
    baselines = baseline or []
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise FnetError(f"--baseline {unknown[0]}: unknown; choose from {', '.join(BASELINES)}")
    fusing = weights is not None or model is not None
    if weights is not None and model is not None:
        raise FnetError(
            f"give --model or --weights, not both: --model {model.name} carries its own weights"
        )
    ignored = [opt for opt, given in (("--backend", backend), ("--name", name != "fnet")) if given]
    if ignored and not fusing:
        raise FnetError(
            f"{ignored[0]} applies to fusing on the fly: give --weights or --model with it"
        )
    generated = ([name] if fusing else []) + baselines
    clash = next((m for m in generated if m in methods or generated.count(m) > 1), None)
    if clash is not None:
        raise FnetError(
            f"method name {clash!r} given twice (--fused, --baseline, --name); rename one with "
            "NAME=DIR or --name"
        )
    if not methods and not fusing and not baselines:
        raise FnetError(
            "nothing to evaluate: give --fused DIR, --weights W, --model M or --baseline NAME"
        )
    if plot:
        require("matplotlib")
    check_output(out, "--out", folder=True, inputs=(ir, vis, weights, model))
    listing = pair_folders(ir, vis)
    if not listing.pairs:
        raise InputError(ir, f"no image shares a file name with one in {vis}")
    unpaired = listing.unpaired_message()
    if unpaired:
        typer.echo(f"warning: unpaired source files skipped: {unpaired}", err=True)

    speed: dict[str, float] = {}
    outputs = Outputs("eval")
    folder = outputs.folder(out, "the results")
    if fusing:
        runner = open_runner(model, backend, device, None, weights, notify=notice)
        compute_device = parse_device(device, ANY_KIND).as_torch()
        with phase(f"preparing {runner.name}"):
            runner.activate()  # exported, if need be, before the timed fusions
        with runner:
            fuser = ImageFuser(runner, None, compute_device, FuseOptions(luminance="gray"))
            speed[name] = _fuse_all(
                name, listing.pairs, folder, lambda p: fuser.fuse_files(p.ir, p.vis)
            )
    for method in baselines:
        function = BASELINES[method]

        def fuse_baseline(pair: Pair, function: Baseline = function) -> np.ndarray:
            ir_image, vis_image = read_ir(pair.ir), read_visible(pair.vis, "gray").luma
            if ir_image.shape != vis_image.shape:
                raise InputError(pair.ir, f"size differs from {pair.vis.name}")
            return to_uint8(function(ir_image, vis_image))

        speed[method] = _fuse_all(method, listing.pairs, folder, fuse_baseline)
    for method in generated:
        methods[method] = folder.root / "fused" / method  # moved there if out failed meanwhile

    pairings = pair_methods(ir, vis, methods)
    for method, pairing in pairings.items():
        if pairing.unpaired:
            names = ", ".join(dict.fromkeys(p.name for p in pairing.unpaired))
            typer.echo(f"warning: {method}: files without a full triple skipped: {names}", err=True)
    total = sum(len(p.triples) for p in pairings.values())
    done: dict[str, dict[str, dict[str, float]]] = {}
    stopped: Interrupted | None = None
    try:
        with interrupt_on_signals(), progress_bar() as progress:
            task = progress.add_task("computing metrics", total=total)
            evaluation = evaluate(
                pairings,
                convention,
                metric_gray,
                progress=lambda n: progress.advance(task, n),
                done=done,
            )
    except Interrupted as signalled:
        stopped = signalled
        evaluation = summarize(done, pairings, convention, metric_gray)
    document = to_json(evaluation)
    for method, ms in speed.items():
        if method in document["methods"]:
            document["methods"][method]["ms_per_frame"] = ms
    finished = sum(len(images) for images in done.values())
    if stopped is not None:
        document["partial"] = {"stopped_by": str(stopped), "images": finished, "of": total}
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    folder.write("results.json", lambda path: write_text_atomic(path, text))
    folder.write("results.csv", lambda path: write_csv(evaluation, path))
    folder.write("results.md", lambda path: write_text_atomic(path, markdown_table(evaluation)))
    if stopped is not None:
        typer.echo(
            f"interrupted ({stopped}): partial results, {finished} of {total} images, in "
            f"{folder.root / 'results.json'} (.csv, .md)",
            err=True,
        )
        raise typer.Exit(signal_exit_code(stopped.signum))
    Console(width=max(Console().width, 160)).print(_summary(evaluation, speed))
    written = "results.json, results.csv, results.md"
    if plot:
        dataset = ir.resolve().parent.name or "dataset"
        folder.write("results.png", lambda path: plot_metric_bars({dataset: document}, path))
        written += ", results.png"
    outputs.finish()
    console.print(f"wrote {written} in {out}")
