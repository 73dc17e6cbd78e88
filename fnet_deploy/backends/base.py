"""The runner interface every backend implements (Polygraphy-style life cycle).

A runner is activated once (loads the model, allocates buffers), then ``infer`` is called with
named inputs ``ir`` and ``vis`` (N x 1 x H x W float32 in [0, 1]) and returns the named output
``fused`` (N x 1 x H x W float32, unclamped), then deactivated. Runners are context managers.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType

import numpy as np

INPUT_NAMES: tuple[str, str] = ("ir", "vis")
OUTPUT_NAME = "fused"


class Runner(abc.ABC):
    """Base class: subclasses implement ``_activate``, ``_infer`` and ``_deactivate``."""

    name: str = "runner"

    def __init__(self) -> None:
        self.is_active = False
        self.last_inference_time = 0.0
        self.last_device_time: float | None = None

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
