"""The benchmark matrix: backend x precision x resolution x batch, each beside its floors."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fnet_deploy import __version__
from fnet_deploy.bench.cost import forward_cost
from fnet_deploy.bench.peaks import Peaks
from fnet_deploy.bench.timing import time_runner
from fnet_deploy.errors import FnetError
from fnet_deploy.model.fnet import FNet
from fnet_deploy.runtime.backends.base import Runner
from fnet_deploy.runtime.backends.torch_runner import TorchRunner

RunnerFactory = Callable[[FNet, str, str, tuple[int, int, int]], Runner]


@dataclass(frozen=True)
class Cell:
    """One point of the matrix."""

    backend: str
    precision: str
    height: int
    width: int
    batch: int


@dataclass
class CellResult:
    """Timing of one cell beside the floors of its shape; ``skipped`` says why it did not run."""

    cell: Cell
    median_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    fps: float | None = None
    samples: list[float] | None = None
    gflop: float = 0.0
    compute_floor_ms: float | None = None
    memory_floor_ms: float | None = None
    skipped: str | None = None

    @property
    def fraction_of_floor(self) -> float | None:
        """The binding floor over the measured median (1.0 would be at the hardware's limit)."""
        floors = [f for f in (self.compute_floor_ms, self.memory_floor_ms) if f is not None]
        if self.median_ms is None or not floors:
            return None
        return max(floors) / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(asdict(self.cell))
        del data["cell"]
        data["fraction_of_floor"] = self.fraction_of_floor
        return data


def _torch_runner(model: FNet, device: str, precision: str, shape: tuple[int, int, int]) -> Runner:
    return TorchRunner(model, device=device, precision="fp16" if precision == "fp16" else "fp32")


BACKENDS: dict[str, RunnerFactory] = {"torch": _torch_runner}


def register_backend(name: str, factory: RunnerFactory) -> None:
    """Make ``name`` selectable with ``--backend`` (factories build an inactive runner)."""
    BACKENDS[name] = factory


def cells(
    backends: list[str], precisions: list[str], shapes: list[tuple[int, int]], batches: list[int]
) -> Iterator[Cell]:
    """Every combination, in the order the table shows them."""
    for backend in backends:
        if backend not in BACKENDS:
            raise FnetError(f"--backend {backend}: unknown; choose from {', '.join(BACKENDS)}")
        for precision in precisions:
            for height, width in shapes:
                for batch in batches:
                    yield Cell(backend, precision, height, width, batch)


def run_cell(
    cell: Cell,
    model: FNet,
    device: str,
    peaks: Peaks | None,
    warmup: int,
    iterations: int,
    max_seconds: float,
) -> CellResult:
    """Time one cell; a backend that cannot run here is returned as skipped with the reason."""
    bytes_per_element = 2 if cell.precision == "fp16" else 4
    cost = forward_cost(model.config, cell.height, cell.width, cell.batch, bytes_per_element)
    result = CellResult(cell=cell, gflop=cost.flops / 1e9)
    if peaks is not None:
        result.compute_floor_ms = 1e3 * cost.flops / peaks.flops_per_s
        result.memory_floor_ms = 1e3 * cost.activation_bytes / peaks.bytes_per_s
    rng = np.random.default_rng(0)
    shape = (cell.batch, 1, cell.height, cell.width)
    feed = {
        "ir": rng.random(shape, dtype=np.float32),
        "vis": rng.random(shape, dtype=np.float32),
    }
    try:
        runner = BACKENDS[cell.backend](model, device, cell.precision, shape[:1] + shape[2:])
        with runner:
            timing = time_runner(runner, feed, warmup, iterations, max_seconds)
    except FnetError as err:
        result.skipped = str(err)
        return result
    result.samples = timing.samples
    result.median_ms = 1e3 * timing.median
    result.p95_ms = 1e3 * timing.percentile(95)
    result.p99_ms = 1e3 * timing.percentile(99)
    result.fps = timing.frames_per_second
    return result


def machine_info(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "fnet_deploy": __version__,
        "device": device,
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
