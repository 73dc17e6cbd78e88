"""Carrying out an :class:`~fnet_deploy.evaluation.plan.EvalPlan`: fuse the methods fused on the
fly, compute the metrics of every method and write the results.

The source folders are paired before any work (none paired refuses the run). SIGINT or SIGTERM
while the metrics are computed keeps what is done: the results written are partial, and say so.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fnet_deploy.data.images import read_ir, read_visible, to_uint8, write_image
from fnet_deploy.data.pairs import Pair, pair_folders
from fnet_deploy.evaluation.plan import EvalPlan, OnTheFly
from fnet_deploy.evaluation.report import EvalReport, ResultsFolder, ResultsWriter
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import InputError
from fnet_deploy.helpers.signals import Interrupted, interrupt_on_signals
from fnet_deploy.metrics.baselines import BASELINES, Baseline
from fnet_deploy.metrics.plots import plot_metric_bars
from fnet_deploy.metrics.report import (
    Evaluation,
    evaluate,
    markdown_table,
    pair_methods,
    summarize,
    to_json,
    write_csv,
)

FuseOne = Callable[[Pair], np.ndarray]
"""Fuses one pair into a uint8 image."""


@dataclass(frozen=True)
class EvalOutcome:
    """How a run ended.

    Attributes:
        folder: where the results are (elsewhere than asked if that place failed meanwhile).
        written: the results files written, by name.
        stopped: the signal that stopped the metrics (``None``: complete).
        finished: the images whose metrics were computed.
        total: the images to compute.
    """

    folder: Path
    written: tuple[str, ...]
    stopped: Interrupted | None
    finished: int
    total: int


def run_eval(plan: EvalPlan, report: EvalReport, outputs: ResultsWriter) -> EvalOutcome:
    """Fuse, score and write what ``plan`` asks for, saying so through ``report``.

    Raises:
        InputError: no image of the IR folder shares a file name with one in the visible folder,
            or a pair whose two images differ in size.
    """
    listing = pair_folders(plan.ir, plan.vis)
    if not listing.pairs:
        raise InputError(plan.ir, f"no image shares a file name with one in {plan.vis}")
    unpaired = listing.unpaired_message()
    if unpaired:
        report.warning(f"unpaired source files skipped: {unpaired}")
    folder = outputs.folder(plan.out, "the results")
    speed: dict[str, float] = {}
    if plan.fnet is not None:
        speed[plan.fnet.name] = _fuse_with_fnet(plan.fnet, listing.pairs, folder, report)
    for method in plan.baselines:
        fuse = functools.partial(_fuse_baseline, function=BASELINES[method])
        speed[method] = _fuse_all(method, listing.pairs, folder, fuse, report)
    methods = dict(plan.fused)
    for method in plan.generated:
        methods[method] = folder.root / "fused" / method  # moved there if out failed meanwhile
    pairings = pair_methods(plan.ir, plan.vis, methods)
    for method, pairing in pairings.items():
        if pairing.unpaired:
            names = ", ".join(dict.fromkeys(p.name for p in pairing.unpaired))
            report.warning(f"{method}: files without a full triple skipped: {names}")
    total = sum(len(p.triples) for p in pairings.values())
    done: dict[str, dict[str, dict[str, float]]] = {}
    stopped: Interrupted | None = None
    try:
        with interrupt_on_signals(), report.steps("computing metrics", total) as advance:
            evaluation = evaluate(
                pairings, plan.convention, plan.metric_gray, progress=advance, done=done
            )
    except Interrupted as signalled:
        stopped = signalled
        evaluation = summarize(done, pairings, plan.convention, plan.metric_gray)
    finished = sum(len(images) for images in done.values())
    document = _document(evaluation, speed, stopped, finished, total)
    written = _write_results(folder, evaluation, document)
    if stopped is None:
        report.summary(evaluation, speed)
        if plan.plot:
            dataset = plan.ir.resolve().parent.name or "dataset"
            folder.write("results.png", lambda path: plot_metric_bars({dataset: document}, path))
            written += ("results.png",)
    return EvalOutcome(folder.root, written, stopped, finished, total)


def _fuse_with_fnet(
    fnet: OnTheFly, pairs: list[Pair], folder: ResultsFolder, report: EvalReport
) -> float:
    """Fuse every pair with the model (activated first, so that an export is not timed);
    returns mean ms per frame."""
    from fnet_deploy.backends.device import ANY_KIND, parse_device
    from fnet_deploy.inference.images import FuseOptions, ImageFuser
    from fnet_deploy.inference.select import open_runner

    runner = open_runner(
        fnet.model, fnet.backend, fnet.device, None, fnet.weights, notify=report.notice
    )
    compute_device = parse_device(fnet.device, ANY_KIND).as_torch()
    with report.phase(f"preparing {runner.name}"):
        runner.activate()  # exported, if need be, before the timed fusions
    with runner:
        fuser = ImageFuser(runner, None, compute_device, FuseOptions(luminance="gray"))
        return _fuse_all(fnet.name, pairs, folder, lambda p: fuser.fuse_files(p.ir, p.vis), report)


def _fuse_baseline(pair: Pair, function: Baseline) -> np.ndarray:
    """A classical baseline's fusion of ``pair`` in grey.

    Raises:
        InputError: the two images differ in size.
    """
    ir_image, vis_image = read_ir(pair.ir), read_visible(pair.vis, "gray").luma
    if ir_image.shape != vis_image.shape:
        raise InputError(pair.ir, f"size differs from {pair.vis.name}")
    return to_uint8(function(ir_image, vis_image))


def _fuse_all(
    name: str, pairs: list[Pair], folder: ResultsFolder, fuse_one: FuseOne, report: EvalReport
) -> float:
    """Fuse every pair with ``fuse_one`` into ``fused/<name>/`` of ``folder``; returns mean ms
    per frame."""
    spent = 0.0
    with report.steps(f"fusing with {name}", len(pairs)) as advance:
        for pair in pairs:
            start = time.perf_counter()
            image = fuse_one(pair)
            spent += time.perf_counter() - start
            folder.write(
                Path("fused", name, f"{pair.name}.png"),
                functools.partial(write_image, image=image),
            )
            advance(1)
    return 1e3 * spent / max(len(pairs), 1)


def _document(
    evaluation: Evaluation,
    speed: dict[str, float],
    stopped: Interrupted | None,
    finished: int,
    total: int,
) -> dict[str, Any]:
    """results.json's document: the evaluation, each method's ms per frame, and how far a
    stopped run got."""
    document = to_json(evaluation)
    for method, ms in speed.items():
        if method in document["methods"]:
            document["methods"][method]["ms_per_frame"] = ms
    if stopped is not None:
        document["partial"] = {"stopped_by": str(stopped), "images": finished, "of": total}
    return document


def _write_results(
    folder: ResultsFolder, evaluation: Evaluation, document: dict[str, Any]
) -> tuple[str, ...]:
    """results.json, results.csv and results.md; their names."""
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    folder.write("results.json", lambda path: write_text_atomic(path, text))
    folder.write("results.csv", lambda path: write_csv(evaluation, path))
    folder.write("results.md", lambda path: write_text_atomic(path, markdown_table(evaluation)))
    return ("results.json", "results.csv", "results.md")
