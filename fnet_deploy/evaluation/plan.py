"""What one ``fnet-deploy eval`` run fuses and scores, decided from its options before any work.

:func:`eval_plan` turns the command's options into an :class:`EvalPlan` and refuses options that
contradict each other, each with one line naming them
(:class:`~fnet_deploy.helpers.errors.FnetError`, exit 2);
:func:`fnet_deploy.evaluation.run.run_eval` carries the plan out. Nothing here imports PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.metrics.baselines import BASELINES
from fnet_deploy.metrics.inputs import Convention
from fnet_deploy.metrics.report import Luminance

DEFAULT_NAME = "fnet"
"""The method name of the model fused on the fly, without ``--name``."""


@dataclass(frozen=True)
class OnTheFly:
    """FNet fused on the fly (``--weights`` or ``--model``), as
    :func:`~fnet_deploy.inference.select.open_runner` takes it.

    Attributes:
        name: the method's name in the results.
        weights: FNet weights (``None`` with ``model``).
        model: an exported model or model URI (``None`` with ``weights``).
        backend: the backend (``None``: by the model file's type, or the fastest exact form).
        device: where the model computes.
    """

    name: str
    weights: Path | None
    model: Path | None
    backend: str | None
    device: str


@dataclass(frozen=True)
class EvalPlan:
    """Everything one ``eval`` run does.

    Attributes:
        ir: the folder of IR (or MRI) source images.
        vis: the folder of visible (or CT/PET/SPECT) source images, paired by file name.
        fused: the methods fused beforehand, ``(name, folder)`` in the order given.
        fnet: the model fused on the fly (``None``: none).
        baselines: the classical baselines fused on the fly, in order.
        out: the results folder.
        convention: the metrics' convention (``paper`` or ``standard``).
        metric_gray: how colour images become grey for the metrics.
        plot: whether the per-metric bar charts are drawn.
    """

    ir: Path
    vis: Path
    fused: tuple[tuple[str, Path], ...]
    fnet: OnTheFly | None
    baselines: tuple[str, ...]
    out: Path
    convention: Convention
    metric_gray: Luminance
    plot: bool

    @property
    def generated(self) -> tuple[str, ...]:
        """The methods the run fuses itself: the model, then the baselines."""
        return ((self.fnet.name,) if self.fnet is not None else ()) + self.baselines

    @property
    def inputs(self) -> tuple[Path | None, ...]:
        """The files and folders the run reads, which no output may replace."""
        if self.fnet is None:
            return (self.ir, self.vis)
        return (self.ir, self.vis, self.fnet.weights, self.fnet.model)


def fused_dirs(specs: list[str]) -> dict[str, Path]:
    """``--fused``: ``NAME=DIR`` or ``DIR`` (named after the folder) -> {name: folder}.

    Raises:
        FnetError: a name given twice.
    """
    methods: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        path = Path(folder) if sep else Path(spec)
        name = name if sep else path.name
        if name in methods:
            raise FnetError(f"--fused: method name {name!r} given twice; use NAME=DIR")
        methods[name] = path
    return methods


def eval_plan(
    *,
    ir: Path,
    vis: Path,
    fused: list[str],
    weights: Path | None,
    model: Path | None,
    backend: str | None,
    name: str,
    baselines: list[str],
    out: Path,
    convention: Convention,
    metric_gray: Luminance,
    device: str,
    plot: bool,
) -> EvalPlan:
    """The plan of the evaluation the options (the command's, by parameter name) ask for.

    Raises:
        FnetError: options that contradict each other or a bad value among them, in one line
            naming the options.
        MissingDependencyError: ``plot`` without matplotlib.
    """
    methods = fused_dirs(fused)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise FnetError(f"--baseline {unknown[0]}: unknown; choose from {', '.join(BASELINES)}")
    fusing = weights is not None or model is not None
    if weights is not None and model is not None:
        raise FnetError(
            f"give --model or --weights, not both: --model {model.name} carries its own weights"
        )
    named = name != DEFAULT_NAME
    ignored = [opt for opt, given in (("--backend", backend), ("--name", named)) if given]
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
    return EvalPlan(
        ir=ir,
        vis=vis,
        fused=tuple(methods.items()),
        fnet=OnTheFly(name, weights, model, backend, device) if fusing else None,
        baselines=tuple(baselines),
        out=out,
        convention=convention,
        metric_gray=metric_gray,
        plot=plot,
    )
