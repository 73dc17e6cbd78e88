"""Helpers shared by the command modules: error reporting, option parsing, progress bars."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fnet_deploy.data.thermal import ThermalNorm
from fnet_deploy.errors import FnetError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True)

WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="FNet weights: fnet-deploy .safetensors or the published .pth "
        "(default: the package's own weights)."
    ),
]
DeviceOption = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")]
IrNormOption = Annotated[
    ThermalNorm,
    typer.Option(help="16-bit IR to [0,1]: percentile clip, per-image minmax, or fixed /65535."),
]
IrPercentilesOption = Annotated[
    str, typer.Option(help="Low,high percentiles for --ir-norm percentile.")
]


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`FnetError` into ``error: <message>`` on stderr and exit code 2.

    An :class:`OSError` that reaches the command (an output folder under a regular file, a
    read-only place, a full disk) is reported the same way, as ``error: <path>: <problem>``.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except FnetError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            problem = (err.strerror or str(err) or type(err).__name__).lower()
            typer.echo(f"error: {where}{problem}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def parse_pair(text: str, option: str, example: str = "1,99") -> tuple[float, float]:
    """``"1,99"`` -> ``(1.0, 99.0)``: two finite numbers, the first below the second."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise FnetError(f"{option} expects two numbers like '{example}', got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise FnetError(f"{option} expects low,high with low < high, got {text!r}")
    return low, high


def parse_percentiles(text: str, option: str = "--ir-percentiles") -> tuple[float, float]:
    """``"1,99"`` -> ``(1.0, 99.0)``, with ``0 <= low < high <= 100``."""
    low, high = parse_pair(text, option)
    if low < 0 or high > 100:
        raise FnetError(f"{option} expects percentiles between 0 and 100, got {text!r}")
    return low, high


def progress_bar() -> Progress:
    """A rich progress bar on stderr with count, elapsed and remaining time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
