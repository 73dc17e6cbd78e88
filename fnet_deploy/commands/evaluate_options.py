"""The options of ``fnet-deploy eval``, each declared once with its help (the shared ones are in
:mod:`fnet_deploy.commands.common`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fnet_deploy.commands.common import MODEL_HELP, WEIGHTS_FILES
from fnet_deploy.metrics.baselines import BASELINES
from fnet_deploy.metrics.inputs import Convention
from fnet_deploy.metrics.report import Luminance

IrFolderOption = Annotated[Path, typer.Option("--ir", help="Folder of IR (or MRI) source images.")]

VisFolderOption = Annotated[
    Path, typer.Option("--vis", help="Folder of visible (or CT/PET/SPECT) source images.")
]

FusedOption = Annotated[
    list[str] | None,
    typer.Option(help="Fused results of a method: NAME=DIR or DIR (repeatable)."),
]

FuseWeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help=f"{WEIGHTS_FILES}, fused on the fly as method --name (default: no FNet method; "
        "give --weights or --model for one).",
    ),
]

FuseModelOption = Annotated[
    Path | None, typer.Option("--model", help=f"{MODEL_HELP} Fused on the fly as method --name.")
]

NameOption = Annotated[str, typer.Option(help="Method name for --weights / --model.")]

BaselineOption = Annotated[
    list[str] | None,
    typer.Option(
        "--baseline",
        help=f"Classical baselines to fuse on the fly: {', '.join(BASELINES)}.",
    ),
]

ResultsOption = Annotated[
    Path, typer.Option("--out", help="Folder for results.csv/json/md and fused images.")
]

ConventionOption = Annotated[
    Convention, typer.Option(help="'paper' reproduces published tables; 'standard' textbook.")
]

MetricGrayOption = Annotated[
    Luminance,
    typer.Option(
        help="How colour images become grey for the metrics: BT.601 weights (the papers') "
        "or BT.709."
    ),
]

PlotOption = Annotated[
    bool, typer.Option(help="Also draw per-metric bar charts (results.png; needs matplotlib).")
]
