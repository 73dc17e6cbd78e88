"""The options of ``fnet-deploy train``, each declared once with its help (``--set`` overrides any
config field; every option's default is the config's)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.commands.common import TORCH_DEVICE_HELP
from fnet_deploy.training.config import Stages

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (see configs/default.toml).")
]

StageOption = Annotated[
    Stages | None, typer.Option(help="Stage to train: 1, 2 or both (default: config).")
]

DataOption = Annotated[
    list[Path] | None,
    typer.Option(help="Data folder holding ir/ and vi/ (repeat to combine several)."),
]

ValDataOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--val-data",
        help="Validation folder holding ir/ and vi/ (repeatable; e.g. MSRS_test): the "
        "moving average is scored on a few of its pairs every log.validate_every "
        "iterations (validation.csv, fnet_best.safetensors). Pairs it picks from a "
        "training folder are left out of training. Never the test sets.",
    ),
]

RunFolderOption = Annotated[
    Path | None, typer.Option(help="Output folder: checkpoints, logs, weights.")
]

IterationsOption = Annotated[
    int | None, typer.Option(min=1, help="Iterations of each stage trained.")
]

TrainBatchOption = Annotated[
    int | None,
    typer.Option("--batch", min=1, help="Training batch: crops per iteration and process."),
]

CropOption = Annotated[int | None, typer.Option(min=11, help="Crop edge in pixels.")]

LrOption = Annotated[float | None, typer.Option(help="Adam learning rate.")]

TrainDeviceOption = Annotated[
    str | None, typer.Option(help=f"{TORCH_DEVICE_HELP} Under torchrun: each process's GPU.")
]

SeedOption = Annotated[int | None, typer.Option(min=0, help="Seed of init and crops.")]

MaxTimeMinOption = Annotated[
    float | None,
    typer.Option(
        "--max-time-min",
        min=0.0,
        max=10_080.0,
        help="Time box (at most a week): stop after the last iteration that fits, state "
        "saved (exit 75; continue with --resume). 0: none.",
    ),
]

ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")]

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config field: section.field=value (repeatable)."),
]
