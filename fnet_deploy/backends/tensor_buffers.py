"""Named float32 buffers held by torch tensors on one device, for TensorRT's inputs and outputs.

TensorRT reads and writes raw device pointers; torch owns the memory behind them (its caching
allocator on a GPU), so nothing else allocates or frees device memory. Each name keeps one flat
tensor that grows when a larger shape comes and is reused, as a view, for every smaller one. The
bookkeeping is device-agnostic: on ``cpu`` it behaves the same, which is how it is tested.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class TensorBuffers:
    """Float32 buffers by name on ``device``, grown on demand, never shrunk until :meth:`clear`.

    Args:
        device: where the buffers live (``cuda:N`` for TensorRT; any torch device works).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._flat: dict[str, torch.Tensor] = {}

    def view(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A C-contiguous float32 tensor of ``shape`` over the buffer ``name`` (its contents are
        whatever the buffer held).

        The buffer is reallocated only when ``shape`` needs more elements than it has; the
        returned view then starts at the new storage, so pointers taken earlier are stale.
        """
        count = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < count:
            flat = torch.empty(count, dtype=torch.float32, device=self.device)
            self._flat[name] = flat
        return flat[:count].view(shape)

    def upload(self, name: str, array: np.ndarray) -> torch.Tensor:
        """Copy a host array (any float dtype, any layout) into the buffer ``name``.

        On a GPU the copy is queued on torch's current stream, so work queued after it on that
        stream sees the data.

        Returns:
            The view holding the data (float32, same shape as ``array``).
        """
        host = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        tensor = self.view(name, tuple(host.shape))
        tensor.copy_(host)
        return tensor

    def capacity(self, name: str) -> int:
        """Elements the buffer ``name`` holds now (0 if never used)."""
        flat = self._flat.get(name)
        return 0 if flat is None else flat.numel()

    def clear(self) -> None:
        """Drop every buffer (torch frees or caches the memory)."""
        self._flat.clear()
