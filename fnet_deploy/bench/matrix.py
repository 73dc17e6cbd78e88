"""The benchmark matrix: backend x precision x resolution x batch, each beside its floors."""

from __future__ import annotations

import copy
import platform
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fnet_deploy import __version__
from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.cuda_math import tf32_allowed
from fnet_deploy.backends.torch_runner import Precision, TorchRunner
from fnet_deploy.bench.peaks import Peaks
from fnet_deploy.bench.timing import random_feed, time_runner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.cost import forward_cost
from fnet_deploy.model.deploy import DeployOptions, to_deploy
from fnet_deploy.model.fnet import FNet

Shape = tuple[int, int, int]
RunnerFactory = Callable[[FNet, str, str, Shape, Path], Runner]
"""``(model, device, precision, (N, H, W), work folder) -> inactive runner``."""


@dataclass(frozen=True)
class Cell:
    """One point of the matrix."""

    backend: str
    precision: str
    height: int
    width: int
    batch: int

    def label(self) -> str:
        """``backend precision WIDTHxHEIGHT bN``, as the cell is shown."""
        return f"{self.backend} {self.precision} {self.width}x{self.height} b{self.batch}"


@dataclass
class CellResult:
    """Timing of one cell beside the floors of its shape; ``skipped`` says why it did not run
    (the backend cannot run here: the project's own error), ``error`` what else stopped it
    (``"<exception type>: <message>"``, e.g. a CUDA out-of-memory error or a failed capture).

    Latencies are end to end (inputs copied in, output copied out, device synchronised);
    ``device_median_ms`` is the forward pass alone on the device (CUDA events), where the runner
    measures it.
    """

    cell: Cell
    median_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    fps: float | None = None
    samples: list[float] | None = None
    device_median_ms: float | None = None
    gflop: float = 0.0
    compute_floor_ms: float | None = None
    memory_floor_ms: float | None = None
    speedup: float | None = None
    skipped: str | None = None
    error: str | None = None

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


def _torch(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
    return TorchRunner(model, device, _torch_precision(precision))


def _torch_deploy(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
    return TorchRunner(to_deploy(model), device, _torch_precision(precision))


def _torch_compile(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
    gpu = torch.device(device).type == "cuda"
    return TorchRunner(
        to_deploy(model), device, _torch_precision(precision), compile=True, channels_last=gpu
    )


def _torch_deploy_variant(
    channels_last: bool, cuda_graph: bool, col2im: bool = False
) -> RunnerFactory:
    """The eager deploy form in NHWC layout, replayed from CUDA graphs, and/or with its
    few-output convolutions as taps plus ``fold`` (:class:`~fnet_deploy.model.deploy.TapConv`)."""

    def factory(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
        return TorchRunner(
            to_deploy(model, DeployOptions(col2im=col2im)),
            device,
            _torch_precision(precision),
            channels_last=channels_last,
            cuda_graph=cuda_graph,
        )

    return factory


def _onnx_model(model: FNet, precision: str, work: Path, col2im: bool = False) -> Path:
    """The deploy form exported once per variant into ``work`` (dynamic N, H, W); ``int8`` is
    the FP32 model quantized as ``fnet-deploy export --precision int8`` does by default."""
    from fnet_deploy.export.onnx_graph import OnnxSpec, build_onnx, save_onnx

    path = work / f"fnet_{precision}{'_col2im' if col2im else ''}.onnx"
    if path.exists():
        return path
    if precision == "int8":
        from fnet_deploy.export.int8 import (
            CalibrationSet,
            Int8Spec,
            default_calibration_pairs,
            quantize_int8,
        )

        source = _onnx_model(model, "fp32", work, col2im)
        calibration = CalibrationSet.of(default_calibration_pairs("ycbcr"))
        save_onnx(quantize_int8(source, calibration, Int8Spec(), model.config).proto, path)
    else:
        spec = OnnxSpec(precision=_onnx_precision(precision), options=DeployOptions(col2im=col2im))
        save_onnx(build_onnx(model, spec, {}), path)
    return path


def _onnxruntime(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
    from fnet_deploy.backends.onnx_runner import OnnxRunner

    return OnnxRunner(_onnx_model(model, precision, work), device)


def _onnxruntime_col2im(
    model: FNet, device: str, precision: str, shape: Shape, work: Path
) -> Runner:
    from fnet_deploy.backends.onnx_runner import OnnxRunner

    return OnnxRunner(_onnx_model(model, precision, work, col2im=True), device)


def _tensorrt(model: FNet, device: str, precision: str, shape: Shape, work: Path) -> Runner:
    from fnet_deploy.backends.engine_info import EnginePrecision, ShapeProfile, sidecar_path
    from fnet_deploy.backends.tensorrt_runner import TensorRTRunner
    from fnet_deploy.export.tensorrt_build import EngineBuildOptions, build_engine

    onnx_precision: EnginePrecision = "int8" if precision == "int8" else _onnx_precision(precision)
    cuda = device if torch.device(device).type == "cuda" else "cuda:0"
    batch, height, width = shape
    dims = (batch, 1, height, width)
    engine = work / f"fnet_{precision}_{batch}x{height}x{width}.engine"
    if not (engine.exists() and sidecar_path(engine).exists()):
        options = EngineBuildOptions(
            precision=onnx_precision,
            profile=ShapeProfile(dims, dims, dims),
            timing_cache=work / "timing.cache",
            device=cuda,
        )
        onnx_path = _onnx_model(model, precision, work)
        build_engine(
            onnx_path,
            engine,
            options,
            onnx_precision=onnx_precision,
            model_config=model.config.to_dict(),
        )
    return TensorRTRunner(engine, cuda)


def _torch_precision(precision: str) -> Precision:
    if precision not in ("fp32", "fp16"):
        raise FnetError(f"the torch backends run fp32 or fp16, not {precision}")
    return "fp16" if precision == "fp16" else "fp32"


def _onnx_precision(precision: str) -> Literal["fp32", "fp16"]:
    if precision not in ("fp32", "fp16"):
        raise FnetError(f"ONNX models and engines here are fp32 or fp16, not {precision}")
    return "fp16" if precision == "fp16" else "fp32"


BACKENDS: dict[str, RunnerFactory] = {
    "torch-training": _torch,
    "torch": _torch_deploy,
    "torch-nhwc": _torch_deploy_variant(channels_last=True, cuda_graph=False),
    "torch-graph": _torch_deploy_variant(channels_last=False, cuda_graph=True),
    "torch-nhwc-graph": _torch_deploy_variant(channels_last=True, cuda_graph=True),
    "torch-col2im-graph": _torch_deploy_variant(channels_last=False, cuda_graph=True, col2im=True),
    "torch-compile": _torch_compile,
    "onnxruntime": _onnxruntime,
    "onnxruntime-col2im": _onnxruntime_col2im,
    "tensorrt": _tensorrt,
}
"""Benchmark targets, named as ``--backend`` names them everywhere: ``torch-training`` is the
eager training form (the baseline of every ratio); ``torch`` the eager deploy form;
``torch-nhwc`` the same in channels_last layout; ``torch-graph`` and ``torch-nhwc-graph`` those
replayed from a CUDA graph (CUDA only); ``torch-col2im-graph`` the deploy form with its
few-output convolutions as 1x1 taps plus ``fold``, from a CUDA graph; ``torch-compile`` the
deploy form through torch.compile (channels_last on CUDA); ``onnxruntime`` the exported deploy
form; ``onnxruntime-col2im`` the same with few-output convolutions as 1x1 + Col2Im (fastest
on ORT's CPU provider, not for TensorRT); ``tensorrt`` an engine built for each cell's exact
shape. Precision ``int8`` (ONNX Runtime and TensorRT only) is the Q/DQ model of ``fnet-deploy
export --precision int8``, calibrated on the shipped sample and sequence."""

_EXPORTED = ("onnx", "onnxscript")
REQUIRES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", *_EXPORTED),
    "onnxruntime-col2im": ("onnxruntime", *_EXPORTED),
    "tensorrt": ("tensorrt", "polygraphy", *_EXPORTED),
}
"""The optional packages (:data:`fnet_deploy.helpers.optional.EXTRAS`) each backend needs; the torch
backends need none."""


def require_backend(backend: str) -> None:
    """Raise :class:`~fnet_deploy.helpers.errors.MissingDependencyError` if ``backend`` (a key of
    :data:`BACKENDS`) lacks an optional package."""
    for module in REQUIRES.get(backend, ()):
        require(module)


def cells(
    backends: list[str], precisions: list[str], shapes: list[tuple[int, int]], batches: list[int]
) -> Iterator[Cell]:
    """Every combination, in the order the table shows them (backends are keys of BACKENDS)."""
    for backend in backends:
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
    work: Path,
) -> CellResult:
    """Time one cell on its own copy of ``model`` (runners cast and move the model they are
    given: a later cell must not see an fp16 or CUDA copy).

    A backend that cannot run here is returned as skipped with the reason; any other exception
    of the backend is returned as the cell's ``error``, so that the other cells still run.
    ``peaks`` are those of the cell's precision (:func:`~fnet_deploy.bench.peaks.
    peaks_per_precision`).
    """
    bytes_per_element = 2 if cell.precision == "fp16" else 4
    cost = forward_cost(model.config, cell.height, cell.width, cell.batch, bytes_per_element)
    result = CellResult(cell=cell, gflop=cost.flops / 1e9)
    if peaks is not None:
        result.compute_floor_ms = 1e3 * cost.flops / peaks.flops_per_s
        result.memory_floor_ms = 1e3 * cost.activation_bytes / peaks.bytes_per_s
    feed = random_feed(cell.batch, cell.height, cell.width)
    try:
        require_backend(cell.backend)
        factory = BACKENDS[cell.backend]
        shape = (cell.batch, cell.height, cell.width)
        runner = factory(copy.deepcopy(model), device, cell.precision, shape, work)
        with runner:
            timing = time_runner(runner, feed, warmup, iterations, max_seconds)
    except FnetError as err:
        result.skipped = str(err)
        return result
    except Exception as err:  # recorded in the cell's row; KeyboardInterrupt still stops all
        result.error = f"{type(err).__name__}: {err}"
        return result
    result.samples = timing.samples
    result.median_ms = 1e3 * timing.median
    if timing.device_samples:
        result.device_median_ms = 1e3 * float(np.median(timing.device_samples))
    result.p95_ms = 1e3 * timing.percentile(95)
    result.p99_ms = 1e3 * timing.percentile(99)
    result.fps = timing.frames_per_second
    return result


def add_speedups(results: list[CellResult]) -> None:
    """Set each result's speed-up over eager ``torch-training`` fp32 at the same shape and
    batch."""
    baseline = {
        (r.cell.height, r.cell.width, r.cell.batch): r.median_ms
        for r in results
        if r.cell.backend == "torch-training" and r.cell.precision == "fp32" and r.median_ms
    }
    for r in results:
        base = baseline.get((r.cell.height, r.cell.width, r.cell.batch))
        if base is not None and r.median_ms:
            r.speedup = base / r.median_ms


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
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_tf32_convolutions"] = tf32_allowed()
    return info
