"""Validation during training: the moving-average weights fused and scored on held-out pairs.

Each validation set is a folder of IR / visible pairs (``--val-data``; ``val.folders``). From
each, ``val.pairs`` pairs are picked evenly by name and centre-cropped once to ``val.crop``
pixels (a small fixed set, so that validating costs a few seconds). Pairs picked from a folder
that is also training data are left out of training (``holdout_names``).

A validation fuses every pair with the moving-average FNet through the package's own runner
(:class:`~fnet_deploy.backends.torch_runner.TorchRunner`, deploy form), rounds the output to
8 bits as a saved image would be, and scores it with the package's metrics in the paper's
convention (MI, VIF, Qabf, SSIM), as ``fnet-deploy eval`` does: IR read as grayscale, visible as
OpenCV's full-range grayscale.

**Score** (the rule that picks ``fnet_best.safetensors``): the mean over the sets of the mean
over the four metrics of each value divided by the published checkpoint's value of that metric
on TNO (:data:`SCORE_SCALE`), so that each metric counts by its relative change and 1.0 is "as
good as the paper on TNO". Only stage-II validations compete for the best weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.data.images import read_ir, read_visible, to_uint8
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.helpers.errors import InputError
from fnet_deploy.metrics import compute_metrics
from fnet_deploy.model.deploy import to_deploy
from fnet_deploy.model.fnet import FNet

VAL_METRICS = ("MI", "VIF", "Qabf", "SSIM")
"""The metrics a validation reports (paper convention)."""

SCORE_SCALE = {"MI": 2.5689, "VIF": 0.8035, "Qabf": 0.5652, "SSIM": 1.0459}
"""The published checkpoint's means on the 25 TNO pairs (paper convention, docs/training.md):
each metric's unit in the validation score."""


@dataclass(frozen=True)
class ValPair:
    """One validation pair: ``name`` (``<folder>/<stem>``) and its centre crops, H x W float32
    in [0, 1] (IR grayscale, visible OpenCV grayscale)."""

    name: str
    ir: np.ndarray
    vis: np.ndarray


@dataclass(frozen=True)
class ValSet:
    """The picked pairs of one validation folder, named after the folder."""

    name: str
    folder: Path
    pairs: tuple[ValPair, ...]


def pick_evenly(names: list[str], count: int) -> list[str]:
    """``count`` names spread evenly over the sorted ``names`` (all of them if fewer), first and
    last included."""
    ordered = sorted(names)
    if count >= len(ordered):
        return ordered
    if count == 1:
        return [ordered[len(ordered) // 2]]
    step = (len(ordered) - 1) / (count - 1)
    return [ordered[round(i * step)] for i in range(count)]


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of an H x W image (a side shorter than ``size``
    is kept whole)."""
    height, width = image.shape
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def load_validation(
    folders: tuple[str, ...], ir_dir: str, vis_dir: str, pairs: int, crop: int
) -> list[ValSet]:
    """Read the validation sets (before training starts).

    Raises:
        InputError: a folder or its ir/vi sub-folder is missing, holds no pairs, or a picked
            pair cannot be read or has mismatched sizes.
    """
    sets = []
    for folder in map(Path, folders):
        listing = pair_folders(folder / ir_dir, folder / vis_dir)
        by_name = {pair.name: pair for pair in listing.pairs}
        if not by_name:
            raise InputError(folder, "validation folder holds no IR / visible pairs")
        picked = []
        for name in pick_evenly(list(by_name), pairs):
            pair = by_name[name]
            ir, vis = read_ir(pair.ir), read_visible(pair.vis, "gray").luma
            if ir.shape != vis.shape:
                raise InputError(pair.vis, f"size differs from the IR image's {ir.shape}")
            picked.append(
                ValPair(f"{folder.name}/{name}", centre_crop(ir, crop), centre_crop(vis, crop))
            )
        sets.append(ValSet(folder.name, folder.resolve(), tuple(picked)))
    return sets


def holdout_names(sets: list[ValSet], training_folders: tuple[str, ...]) -> frozenset[str]:
    """``<folder>/<stem>`` of the validation pairs picked from a training folder (the same
    folder on disk): the pairs to leave out of training."""
    training = {Path(folder).resolve() for folder in training_folders}
    return frozenset(
        pair.name for val_set in sets if val_set.folder in training for pair in val_set.pairs
    )


@dataclass(frozen=True)
class Validation:
    """One validation of a model.

    Attributes:
        per_set: set name -> metric name -> mean over that set's pairs.
        score: the rule of this module's docstring (higher is better).
        seconds: wall time of the validation.
    """

    per_set: dict[str, dict[str, float]]
    score: float
    seconds: float


def validation_score(per_set: dict[str, dict[str, float]]) -> float:
    """Mean over the sets of the mean over :data:`VAL_METRICS` of value / :data:`SCORE_SCALE`."""
    per_set_scores = [
        float(np.mean([values[name] / SCORE_SCALE[name] for name in VAL_METRICS]))
        for values in per_set.values()
    ]
    return float(np.mean(per_set_scores))


def validate(model: nn.Module, sets: list[ValSet], device: str = "cpu") -> Validation:
    """Fuse every validation pair with ``model`` (an FNet, training form; not modified) and
    score the results."""
    start = time.perf_counter()
    deploy = to_deploy(model) if isinstance(model, FNet) else model
    per_set: dict[str, dict[str, float]] = {}
    with TorchRunner(deploy, device) as runner:
        for val_set in sets:
            rows = []
            for pair in val_set.pairs:
                feed = {"ir": pair.ir[None, None], "vis": pair.vis[None, None]}
                fused = to_uint8(runner.infer(feed)["fused"][0, 0])
                scores = compute_metrics(
                    fused, pair.ir * 255.0, pair.vis * 255.0, "paper", VAL_METRICS
                )
                rows.append([scores.values[name] for name in VAL_METRICS])
            means = np.mean(np.asarray(rows, np.float64), axis=0)
            per_set[val_set.name] = dict(zip(VAL_METRICS, map(float, means), strict=True))
    return Validation(per_set, validation_score(per_set), time.perf_counter() - start)
