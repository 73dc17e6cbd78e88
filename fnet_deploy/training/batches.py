"""Training batches written into the training step's input buffers on the training device.

Both sources give exactly the samples of :class:`~fnet_deploy.training.dataset.CropStream`, bit
for bit (same pairs, windows and flips/rotations), so the choice never changes a run:

- :class:`CachedCrops` (``data.cache = true``): the whole decoded training set lives on the
  training device (:class:`DeviceImages`) and each batch is cut there by one gather whose indices
  encode the crop windows and the 8 flips/rotations. Per iteration only B x 4 integers cross from
  the host, and every shape is fixed (what a captured CUDA graph needs around it).
- :class:`LoadedCrops` (``data.cache = false``): crops read from disk by a DataLoader and copied
  in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from fnet_deploy.training.dataset import CropStream, StepBatches, dihedral


class BatchSource(Protocol):
    """Writes the batch of one iteration into the step's input buffers."""

    def prepare(self, step: int) -> None:
        """Host-side work for ``step`` (may run while the device still computes the step before)."""

    def fill(self, step: int, ir: Tensor, vis: Tensor) -> None:
        """Write the batch of ``step`` into ``ir`` and ``vis`` (each B x 1 x crop x crop)."""


class DeviceImages:
    """The (mirror-padded) training pairs on one device, flattened into one buffer per modality.

    Pair ``p`` occupies elements ``offsets[p]`` to ``offsets[p] + heights[p] * widths[p]`` of
    ``ir`` and ``vis``, row by row.

    Args:
        images: ``(ir, vis)`` per pair, each H x W float32 in [0, 1] (the two of a pair alike).
        device: where the buffers live (GPU memory on CUDA).
    """

    def __init__(self, images: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> None:
        sizes = np.array([ir.size for ir, _ in images], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        widths = np.array([ir.shape[1] for ir, _ in images], dtype=np.int64)
        self.device = device
        self.ir = _flat([ir for ir, _ in images], device)
        self.vis = _flat([vis for _, vis in images], device)
        self.offsets = torch.from_numpy(offsets).to(device)
        self.widths = torch.from_numpy(widths).to(device)

    @property
    def nbytes(self) -> int:
        """Device memory held by the two image buffers."""
        return self.ir.numel() * self.ir.element_size() * 2


def _flat(arrays: list[np.ndarray], device: torch.device) -> Tensor:
    flat = np.concatenate([np.ascontiguousarray(a, dtype=np.float32).ravel() for a in arrays])
    return torch.from_numpy(flat).to(device)


class CachedCrops:
    """Cuts each iteration's crops from :class:`DeviceImages` on their device.

    Sample ``(pair, top, left, mode)`` (:meth:`CropStream.sample`) becomes the flat indices
    ``offsets[pair] + (top + rows[mode]) * width + left + cols[mode]``, where ``rows[mode]``,
    ``cols[mode]`` give, for each crop pixel, the window pixel :func:`dihedral` puts there.
    The host computes the B x 4 parameters (:meth:`prepare`, overlapping the previous step on a
    GPU) into one of two pinned buffers; :meth:`fill` copies them over and gathers. The trainer
    reads every step's loss (a synchronisation), so a buffer is never rewritten while its copy
    of two steps before is still pending.

    Args:
        images: the decoded pairs on the training device.
        stream: the sample stream (seed, stage, crop).
        steps: which sample indices each step takes (this process's slice).
    """

    def __init__(self, images: DeviceImages, stream: CropStream, steps: StepBatches) -> None:
        self.images = images
        self.stream = stream
        self.steps = steps
        crop = stream.crop
        grid = np.arange(crop * crop, dtype=np.int64).reshape(crop, crop)
        sources = np.stack([dihedral(grid, mode).ravel() for mode in range(8)])
        device = images.device
        self.rows = torch.from_numpy(sources // crop).to(device)
        self.cols = torch.from_numpy(sources % crop).to(device)
        pin = device.type == "cuda"
        self._host = [
            torch.zeros((steps.batch, 4), dtype=torch.int64, pin_memory=pin) for _ in range(2)
        ]
        self._prepared: dict[int, int] = {}

    def prepare(self, step: int) -> None:
        slot = step % 2
        if self._prepared.get(slot) == step:
            return
        params = np.array([self.stream.sample(i) for i in self.steps.indices(step)], np.int64)
        self._host[slot].numpy()[:] = params
        self._prepared[slot] = step

    def fill(self, step: int, ir: Tensor, vis: Tensor) -> None:
        self.prepare(step)
        images = self.images
        params = self._host[step % 2].to(images.device, non_blocking=True)
        pair, top, left, mode = params.unbind(1)
        width = images.widths[pair]
        corner = images.offsets[pair] + top * width + left
        index = corner[:, None] + self.rows[mode] * width[:, None] + self.cols[mode]
        ir.copy_(torch.take(images.ir, index).view_as(ir))
        vis.copy_(torch.take(images.vis, index).view_as(vis))


class LoadedCrops:
    """Batches from an iterable of ``(ir, vis)`` CPU batches (a DataLoader over CropStream with
    :class:`StepBatches` starting at ``start``), copied into the step's buffers in order.
    """

    def __init__(self, batches: Iterable[tuple[Tensor, Tensor]], start: int) -> None:
        self._batches: Iterator[tuple[Tensor, Tensor]] = iter(batches)
        self._next = start

    def prepare(self, step: int) -> None:
        return None

    def fill(self, step: int, ir: Tensor, vis: Tensor) -> None:
        if step != self._next:
            raise RuntimeError(f"batches are read in order: expected step {self._next}, got {step}")
        cpu_ir, cpu_vis = next(self._batches)
        ir.copy_(cpu_ir, non_blocking=True)
        vis.copy_(cpu_vis, non_blocking=True)
        self._next += 1
