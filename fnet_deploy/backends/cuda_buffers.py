"""Device memory, streams and GPU identity through cuda-python (the ``tensorrt`` extra).

Imported lazily by the TensorRT engine builder and runner; importing this module does not
import CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnet_deploy.errors import FnetError, MissingDependencyError
from fnet_deploy.optional import require


def cudart() -> Any:
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime``, or the older
    ``cuda.cudart``)."""
    try:
        return require("cuda.bindings.runtime")
    except MissingDependencyError:
        return require("cuda.cudart")  # cuda-python < 12.6


def call(result: tuple[Any, ...], what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` result; raise :class:`FnetError` on error."""
    runtime = cudart()
    error, *values = result
    if error != runtime.cudaError_t.cudaSuccess:
        _, text = runtime.cudaGetErrorString(error)
        message = text.decode() if isinstance(text, bytes) else str(text)
        raise FnetError(f"CUDA error in {what}: {message}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Number of CUDA GPUs (0 when the driver says there are none).

    Raises:
        MissingDependencyError: cuda-python is not installed.
        FnetError: the CUDA runtime is unusable (no driver library, a driver older than the
            cuda-python runtime, ...), with CUDA's own message.
    """
    runtime = cudart()
    try:
        error, count = runtime.cudaGetDeviceCount()
    except RuntimeError as err:
        raise FnetError(f"CUDA runtime unusable: {err}") from None
    if error == runtime.cudaError_t.cudaErrorNoDevice:
        return 0
    if error != runtime.cudaError_t.cudaSuccess:
        _, text = runtime.cudaGetErrorString(error)
        message = text.decode() if isinstance(text, bytes) else str(text)
        raise FnetError(f"CUDA cannot count GPUs: {message} (check the driver and cuda-python)")
    return int(count)


def select_device(index: int) -> tuple[str, str]:
    """Make GPU ``index`` current; returns its name and compute capability (``"9.0"``).

    Raises:
        FnetError: no CUDA GPU, or no GPU with that index.
    """
    runtime = cudart()
    count = device_count()
    if count == 0:
        raise FnetError("TensorRT needs an NVIDIA GPU, and CUDA reports none on this machine")
    if not 0 <= index < count:
        raise FnetError(f"no GPU cuda:{index} (this machine has {count})")
    call(runtime.cudaSetDevice(index), "cudaSetDevice")
    props = call(runtime.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    raw = props.name
    name = raw.split(b"\0", 1)[0].decode() if isinstance(raw, bytes) else str(raw)
    return name, f"{props.major}.{props.minor}"


class DeviceBuffer:
    """A block of device memory that grows on demand (never shrinks until freed)."""

    def __init__(self) -> None:
        self.pointer = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        """At least ``nbytes`` of device memory; returns the device pointer."""
        if nbytes > self.nbytes:
            self.free()
            self.pointer = int(call(cudart().cudaMalloc(nbytes), "cudaMalloc"))
            self.nbytes = nbytes
        return self.pointer

    def upload(self, array: np.ndarray, stream: Any) -> int:
        """Copy a C-contiguous host array into this buffer on ``stream``; returns the pointer."""
        runtime = cudart()
        pointer = self.ensure(array.nbytes)
        kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        call(
            runtime.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, stream),
            "cudaMemcpyAsync (host to device)",
        )
        return pointer

    def download(self, array: np.ndarray, stream: Any) -> None:
        """Copy the first ``array.nbytes`` of this buffer into a C-contiguous host array."""
        runtime = cudart()
        kind = runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        call(
            runtime.cudaMemcpyAsync(array.ctypes.data, self.pointer, array.nbytes, kind, stream),
            "cudaMemcpyAsync (device to host)",
        )

    def free(self) -> None:
        """Release the memory (idempotent)."""
        if self.pointer:
            call(cudart().cudaFree(self.pointer), "cudaFree")
        self.pointer = 0
        self.nbytes = 0


def create_stream() -> Any:
    """A new CUDA stream."""
    return call(cudart().cudaStreamCreate(), "cudaStreamCreate")


def synchronize(stream: Any) -> None:
    """Wait for all work queued on ``stream``."""
    call(cudart().cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def destroy_stream(stream: Any) -> None:
    """Release ``stream``."""
    call(cudart().cudaStreamDestroy(stream), "cudaStreamDestroy")
