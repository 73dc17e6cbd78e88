"""What one ``fnet-deploy bench`` run times, decided from its options before any work.

The command parses its list options with :func:`parse_choices` and :func:`parse_batches`
(a bad list refused in one line naming its option) into a :class:`BenchPlan`;
:func:`fnet_deploy.bench.run.run_bench` carries the plan out. Nothing here imports PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fnet_deploy.helpers.errors import FnetError

PRECISIONS = ("fp32", "fp16", "int8")
"""The precisions a cell can be timed in."""


@dataclass(frozen=True)
class BenchPlan:
    """Every cell of the matrix (each backend x precision x size x batch) and how to time it.

    Attributes:
        backends: the targets (:data:`~fnet_deploy.bench.targets.TARGET_NAMES`), in order.
        precisions: ``fp32``, ``fp16``, ``int8``, in order.
        shapes: the image sizes as (height, width).
        batches: the batch sizes.
        device: ``cpu``, ``cuda`` or ``cuda:N`` as given.
        weights: the weights to time (``None``: the packaged weights).
        random_init: time a randomly initialised FNet instead of weights (speed does not depend
            on their values).
        warmup: untimed calls per cell.
        iterations: timed calls per cell, at most.
        max_time_s: how long a cell is timed, at most, in seconds.
        peaks: whether the compute and bandwidth peaks are measured for the floors.
        threads: PyTorch's CPU threads (``None``: its own choice).
        plot: where the latency distributions are drawn (``None``: nowhere).
        json_out: where the results are written as JSON (``None``: nowhere).
    """

    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    batches: tuple[int, ...]
    device: str
    weights: Path | None
    random_init: bool
    warmup: int
    iterations: int
    max_time_s: float
    peaks: bool
    threads: int | None
    plot: Path | None
    json_out: Path | None


def split_list(text: str) -> list[str]:
    """The non-empty items of a comma-separated option, stripped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batch``: comma-separated positive batch sizes.

    Raises:
        FnetError: not integers, none, or one below 1.
    """
    try:
        values = [int(part) for part in split_list(text)]
    except ValueError:
        raise FnetError(f"--batch expects sizes like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise FnetError(f"--batch expects positive sizes like 1,2,4, got {text!r}")
    return tuple(values)


def parse_choices(text: str, option: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of ``allowed`` names (``--backend``, ``--precision``), in order.

    Raises:
        FnetError: an unknown name, or none.
    """
    values = split_list(text)
    unknown = [v for v in values if v not in allowed]
    if not values or unknown:
        got = repr(unknown[0]) if unknown else "nothing"
        raise FnetError(
            f"{option}: expected a comma-separated list of {', '.join(allowed)}, got {got}"
        )
    return tuple(values)
