"""TensorRT backend: a serialized engine built by ``fnet-deploy export --engine``.

On activation the engine's JSON sidecar is compared with this machine (TensorRT version, GPU
model); a mismatch is one clear error with the command that rebuilds the engine. Inference uses
TensorRT's named-tensor API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``;
the same in TensorRT 10 and 11) on a torch CUDA stream, with the device memory of inputs and
output held by torch tensors (:class:`~fnet_deploy.backends.tensor_buffers.TensorBuffers`).
The GPU's name and compute capability come from ``torch.cuda``. TensorRT (the ``tensorrt``
extra) is imported only on activation; PyTorch must be a CUDA build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, Runner
from fnet_deploy.backends.device import cuda_index
from fnet_deploy.backends.engine_info import (
    EngineInfo,
    compatibility_problems,
    format_shape,
    read_sidecar,
    rebuild_command,
)
from fnet_deploy.backends.tensor_buffers import TensorBuffers
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.optional import require
from fnet_deploy.model.config import ModelConfig


@dataclass(frozen=True)
class Gpu:
    """One CUDA GPU as TensorRT engines are tied to it.

    Attributes:
        index: the ``N`` of ``cuda:N``.
        name: the device name (``NVIDIA H200``).
        capability: compute capability ``major.minor`` (``9.0``).
    """

    index: int
    name: str
    capability: str

    @property
    def device(self) -> torch.device:
        """The torch device."""
        return torch.device("cuda", self.index)


def select_gpu(index: int) -> Gpu:
    """Make GPU ``index`` current (for torch and TensorRT alike) and describe it.

    Raises:
        FnetError: PyTorch has no CUDA (a CPU build, or no driver or GPU), or no GPU ``index``.
    """
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise FnetError(
            "TensorRT needs an NVIDIA GPU, and torch.cuda reports none on this machine "
            f"(torch {torch.__version__}, {build})"
        )
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise FnetError(f"no GPU cuda:{index} (this machine has {count})")
    torch.cuda.set_device(index)
    major, minor = torch.cuda.get_device_capability(index)
    return Gpu(index, torch.cuda.get_device_name(index), f"{major}.{minor}")


class TensorRTRunner(Runner):
    """Runs an FNet TensorRT engine on one GPU.

    Args:
        engine_path: the serialized engine (``.engine`` / ``.plan``) with its ``.json`` sidecar
            next to it.
        device: ``cuda`` or ``cuda:N``.
        expected_precision: if given, the engine's precision (``fp32`` / ``fp16`` / ``int8``)
            must match it.
    """

    name = "tensorrt"

    def __init__(
        self, engine_path: str | Path, device: str = "cuda:0", expected_precision: str | None = None
    ) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.device_index = cuda_index(device)
        self.expected_precision = expected_precision
        self.info: EngineInfo | None = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: torch.cuda.Stream | None = None
        self._buffers: TensorBuffers | None = None

    @property
    def precision(self) -> str:
        """The engine's precision, from its sidecar (read on activation)."""
        if self.info is None:
            raise RuntimeError("tensorrt: precision is known after activate()")
        return self.info.precision

    def _activate(self) -> None:
        path = self.engine_path
        if not path.is_file():
            raise InputError(path, "engine file not found" if not path.exists() else "not a file")
        info = read_sidecar(path)
        if self.expected_precision is not None and info.precision != self.expected_precision:
            raise InputError(
                path, f"is a {info.precision} engine, but {self.expected_precision} was requested"
            )
        model_config = _recorded_config(path, info)
        trt = require("tensorrt")
        gpu = select_gpu(self.device_index)
        problems = compatibility_problems(info, str(trt.__version__), gpu.name, gpu.capability)
        if problems:
            raise InputError(
                path,
                f"engine does not fit this machine: {'; '.join(problems)}. TensorRT engines are "
                f"specific to the GPU model and TensorRT version; rebuild it here with: "
                f"{rebuild_command(path, info)}",
            )
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise InputError(path, "TensorRT cannot deserialize the engine (corrupt file?)")
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != {*INPUT_NAMES, OUTPUT_NAME}:
            raise InputError(path, f"not an FNet engine: tensors {sorted(names)}")
        wrong = [n for n in names if engine.get_tensor_dtype(n) != trt.DataType.FLOAT]
        if wrong:
            raise InputError(path, f"tensors {sorted(wrong)} are not float32 at the boundary")
        context = engine.create_execution_context()
        if context is None:
            raise FnetError(f"{path.name}: TensorRT could not create an execution context")
        self.info = info
        self.model_config = model_config
        self.size_range = info.shape_profile().size_range()
        self.max_batch = info.shape_profile().max[0]
        self._engine, self._context = engine, context
        self._stream = torch.cuda.Stream(gpu.device)
        self._buffers = TensorBuffers(gpu.device)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.info is not None and self._stream is not None and self._buffers is not None
        profile = self.info.shape_profile()
        for name in INPUT_NAMES:
            shape = tuple(feed[name].shape)
            if not profile.fits(shape):
                raise FnetError(
                    f"{self.engine_path.name}: input {name} is {format_shape(list(shape))}, "
                    f"outside the engine's profile {format_shape(profile.min)} .. "
                    f"{format_shape(profile.max)}; rebuild with a wider --min-shape/--max-shape"
                )
        context, buffers = self._context, self._buffers
        with torch.cuda.device(buffers.device), torch.cuda.stream(self._stream):
            for name in INPUT_NAMES:
                tensor = buffers.upload(name, feed[name])
                shape = tuple(tensor.shape)
                if not context.set_input_shape(name, shape):
                    raise FnetError(f"TensorRT rejected input shape {shape} for {name}")
                context.set_tensor_address(name, tensor.data_ptr())
            out_shape = tuple(int(d) for d in context.get_tensor_shape(OUTPUT_NAME))
            fused = buffers.view(OUTPUT_NAME, out_shape)
            context.set_tensor_address(OUTPUT_NAME, fused.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise FnetError(f"{self.engine_path.name}: TensorRT execution failed")
            host = fused.cpu()
        self._stream.synchronize()
        return {OUTPUT_NAME: host.numpy()}

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        if self._buffers is not None:
            self._buffers.clear()
        self._buffers = None
        self._stream = None
        self._context = None
        self._engine = None


def _recorded_config(path: Path, info: EngineInfo) -> ModelConfig | None:
    """The architecture the sidecar records (``None`` for engines built before it did).

    Raises:
        InputError: the record is not a valid model configuration.
    """
    if info.model_config is None:
        return None
    try:
        return ModelConfig.from_dict(info.model_config)
    except (TypeError, ValueError, FnetError) as err:
        raise InputError(path, f"malformed model_config in the engine sidecar ({err})") from None
