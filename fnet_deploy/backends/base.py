"""The runner interface every backend implements (Polygraphy-style life cycle).

A runner is activated once (loads the model, allocates buffers), then ``infer`` is called with
named inputs ``ir`` and ``vis`` (N x 1 x H x W float32 in [0, 1]) and returns the named output
``fused`` (N x 1 x H x W float32, unclamped), then deactivated. Runners are context managers.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model.config import ModelConfig

INPUT_NAMES: tuple[str, str] = ("ir", "vis")
OUTPUT_NAME = "fused"


@dataclass(frozen=True)
class SizeRange:
    """The image sizes a model file takes: height and width each within ``min..max``.

    Attributes:
        min_hw: smallest (height, width).
        max_hw: largest (height, width); equal to ``min_hw`` for a fixed-size model.
    """

    min_hw: tuple[int, int]
    max_hw: tuple[int, int]

    @property
    def fixed(self) -> bool:
        """Whether the model takes one size only."""
        return self.min_hw == self.max_hw

    def fits(self, height: int, width: int) -> bool:
        """Whether an H x W input is inside the range."""
        (h0, w0), (h1, w1) = self.min_hw, self.max_hw
        return h0 <= height <= h1 and w0 <= width <= w1

    def describe(self) -> str:
        """``640x480 (W x H) only`` or ``W x H from 64x64 to 1920x1080``."""
        (h0, w0), (h1, w1) = self.min_hw, self.max_hw
        if self.fixed:
            return f"{w0}x{h0} (W x H) only"
        return f"W x H from {w0}x{h0} to {w1}x{h1}"


class BackendUnavailable(FnetError):
    """The backend cannot be reached now (a server down or restarting), and a later call may
    succeed: a stream waits for it as for a lost camera instead of counting it towards
    ``--max-errors``."""


class Runner(abc.ABC):
    """Base class: subclasses implement ``_activate``, ``_infer`` and ``_deactivate``.

    Once active, a runner also tells what it runs: :attr:`model_config` (the architecture, when
    the model records it; tiling needs its receptive radius), :attr:`size_range` (``None``:
    any size; exported models with fixed shapes and TensorRT profiles take a range) and
    :attr:`max_batch` (``None``: any batch; a TensorRT profile or a fixed batch dimension of an
    exported model sets it).

    :attr:`source` names what it runs as the user gave it (a model or weights file, a server
    URI); :func:`~fnet_deploy.inference.select.open_runner` sets it.
    """

    name: str = "runner"
    source: str = ""

    def __init__(self) -> None:
        self.is_active = False
        self.last_inference_time = 0.0
        self.last_device_time: float | None = None
        self.model_config: ModelConfig | None = None
        self.size_range: SizeRange | None = None
        self.max_batch: int | None = None

    def activate(self) -> None:
        """Load the model and allocate what inference needs; idempotent."""
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        """Release the model and buffers; idempotent."""
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feed: ``{"ir": N x 1 x H x W, "vis": N x 1 x H x W}`` float32 in [0, 1].

        Returns:
            ``{"fused": N x 1 x H x W}`` float32 (host memory). The wall time of the call, device
            synchronisation included, is kept in :attr:`last_inference_time` (seconds); backends
            that time the device itself (CUDA events) also set :attr:`last_device_time`.
        """
        if not self.is_active:
            raise RuntimeError(f"{self.name}: infer() before activate()")
        missing = [name for name in INPUT_NAMES if name not in feed]
        if missing:
            raise KeyError(f"{self.name}: missing inputs {missing}")
        start = time.perf_counter()
        out = self._infer(feed)
        self.last_inference_time = time.perf_counter() - start
        return out

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...
