"""What a stage's files record about how they were made: the recipe (config, data, process
count), where stage II started from, and how the step ran (device, torch, CUDA graph, TF32).

The record goes into every training-state file and, with a one-line summary, into the metadata
of the inference weights (``training`` and ``provenance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fnet_deploy.backends.cuda_math import tf32_allowed
from fnet_deploy.training.config import TrainConfig
from fnet_deploy.training.dataset import PairScan, folder_names
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.layout import RunLayout
from fnet_deploy.training.stage import StageParts


@dataclass(frozen=True)
class RunFacts:
    """What every file of a run is made from besides the stage itself: the config, the
    processes, the training pairs and the output folder."""

    config: TrainConfig
    ctx: DistContext
    scan: PairScan
    layout: RunLayout


def stage_info(parts: StageParts, run: RunFacts, total: int, loss: float) -> dict[str, Any]:
    """The record of stage ``parts.stage`` trained to ``total`` iterations with last loss
    ``loss`` (NaN: none yet, recorded as null)."""
    config, ctx, scan = run.config, run.ctx, run.scan
    return {
        "stage": parts.stage,
        "total": total,
        "config": config.to_dict(),
        "world_size": ctx.world_size,
        "global_batch": config.data.batch_size * ctx.world_size,
        "pairs": len(scan.pairs),
        "data": folder_names(config.data.folders),
        "loss": loss if math.isfinite(loss) else None,
        "luminance": "ycbcr",
        "init": parts.init_info,
        "execution": _execution(parts, config, ctx),
    }


def _execution(parts: StageParts, config: TrainConfig, ctx: DistContext) -> dict[str, Any]:
    """How the step ran (device, torch, CUDA graph, convolution form, layout, TF32, precision):
    none of it is part of the recipe, all of it can move float32 results by rounding."""
    cuda = ctx.device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(ctx.device) if cuda else ctx.device.type,
        "torch": torch.__version__,
        "cuda_graph": parts.graph,
        "channels_last": config.speed.channels_last,
        "conv": config.speed.conv_form(ctx.device.type),
        "tf32_convolutions": cuda and tf32_allowed(),
        "precision": config.speed.precision,
        "data_on_device": config.data.cache,
    }


def weights_provenance(
    parts: StageParts, run: RunFacts, done: int, loss: float
) -> tuple[str, dict[str, Any]]:
    """The inference weights' one-line ``provenance`` and their ``training`` record (this stage,
    and stage I's when stage II started from it)."""
    stage, config, scan = parts.stage, run.config, run.scan
    info = stage_info(parts, run, done, loss)
    training: dict[str, Any] = {f"stage{stage}": info}
    if stage == 2 and "stage1" in parts.init_info:
        training["stage1"] = parts.init_info["stage1"]
    stages = "stage I" if stage == 1 else "stages I+II" if "stage1" in training else "stage II"
    provenance = (
        f"fnet-deploy train: {stages}, {done} iterations in stage {stage}, data "
        f"{', '.join(folder_names(config.data.folders))} ({len(scan.pairs)} pairs), "
        "moving-average weights"
    )
    if stage == 2 and parts.init_info.get("sha256"):
        provenance += f", initialised from {Path(parts.init_info['from']).name}"
    return provenance, training
