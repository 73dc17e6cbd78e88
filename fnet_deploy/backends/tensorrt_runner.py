"""TensorRT backend: a serialized engine built by ``fnet-deploy export --engine``.

On activation the engine's JSON sidecar is compared with this machine (TensorRT version, GPU
model); a mismatch is one clear error with the command that rebuilds the engine. Inference uses
the TensorRT 10 named-tensor API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with device buffers from cuda-python that grow on demand. TensorRT and
cuda-python (the ``tensorrt`` extra) are imported only on activation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fnet_deploy.backends.base import INPUT_NAMES, OUTPUT_NAME, Runner
from fnet_deploy.backends.cuda_buffers import (
    DeviceBuffer,
    create_stream,
    destroy_stream,
    select_device,
    synchronize,
)
from fnet_deploy.backends.device import cuda_index
from fnet_deploy.backends.engine_info import (
    EngineInfo,
    compatibility_problems,
    format_shape,
    read_sidecar,
    rebuild_command,
)
from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.optional import require


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
        self._stream: Any = None
        self._buffers: dict[str, DeviceBuffer] = {}

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
        trt = require("tensorrt")
        gpu_name, capability = select_device(self.device_index)
        problems = compatibility_problems(info, str(trt.__version__), gpu_name, capability)
        if problems:
            raise InputError(
                path,
                f"engine does not fit this machine: {'; '.join(problems)}. TensorRT engines are "
                f"specific to the GPU model and TensorRT version; rebuild it here with: "
                f"{rebuild_command(path, info)}",
            )
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
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
        self._engine, self._context = engine, context
        self._stream = create_stream()
        self._buffers = {name: DeviceBuffer() for name in (*INPUT_NAMES, OUTPUT_NAME)}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.info is not None
        profile = self.info.shape_profile()
        arrays = {name: np.ascontiguousarray(feed[name], np.float32) for name in INPUT_NAMES}
        for name, array in arrays.items():
            if not profile.fits(array.shape):
                raise FnetError(
                    f"{self.engine_path.name}: input {name} is {format_shape(list(array.shape))}, "
                    f"outside the engine's profile {format_shape(profile.min)} .. "
                    f"{format_shape(profile.max)}; rebuild with a wider --min-shape/--max-shape"
                )
        context = self._context
        for name, array in arrays.items():
            if not context.set_input_shape(name, array.shape):
                raise FnetError(f"TensorRT rejected input shape {array.shape} for {name}")
            pointer = self._buffers[name].upload(array, self._stream)
            context.set_tensor_address(name, pointer)
        out_shape = tuple(int(d) for d in context.get_tensor_shape(OUTPUT_NAME))
        fused = np.empty(out_shape, np.float32)
        out_buffer = self._buffers[OUTPUT_NAME]
        context.set_tensor_address(OUTPUT_NAME, out_buffer.ensure(fused.nbytes))
        if not context.execute_async_v3(int(self._stream)):
            raise FnetError(f"{self.engine_path.name}: TensorRT execution failed")
        out_buffer.download(fused, self._stream)
        synchronize(self._stream)
        return {OUTPUT_NAME: fused}

    def _deactivate(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}
        if self._stream is not None:
            destroy_stream(self._stream)
        self._stream = None
        self._context = None
        self._engine = None
