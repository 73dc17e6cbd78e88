"""Exponential moving average of a model's weights (the copy saved for inference)."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` after every optimiser step.

    The average starts as a copy of the model. Without warm-up (the paper's recipe) ``d`` is
    ``decay`` from the first step, so after ``n`` steps the starting weights still hold a share
    ``decay ** n`` of the average (37 % after 1,000 steps at 0.999): right for long runs, wrong
    for short ones. With warm-up, step ``n`` (counted from 1) uses
    ``d = min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``num_updates`` rule), so the start is
    forgotten within the first few hundred steps. Floating-point parameters and buffers are
    averaged; other buffers are copied.

    Args:
        model: the model being trained (any ``nn.Module``, not wrapped in DDP).
        decay: in [0, 1); 0 makes the average follow the model exactly.
        warmup: ramp the decay up with the step count as above.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used by the update after optimiser step ``step`` (counted from 1)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step))

    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights after optimiser step ``step`` (from 1)."""
        self.blend(model, 1.0 - self.decay_at(step))

    @torch.no_grad()
    def blend(self, model: nn.Module, weight: float | Tensor) -> None:
        """``ema += weight * (model - ema)`` for every floating-point entry (others copied).

        ``weight`` is ``1 - decay``: a float, or a 0-dim tensor on the model's device, which a
        captured CUDA graph reads at every replay (the training step fills it per iteration).
        """
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), weight)
            else:
                average.copy_(value)

    def averaged(self, kind: type[M]) -> M:
        """The averaged model, checked to be a ``kind`` (for typed callers)."""
        if not isinstance(self.module, kind):
            raise TypeError(f"the averaged model is a {type(self.module).__name__}, not {kind}")
        return self.module

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, keyed like the model's state_dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the averaged weights (strict)."""
        self.module.load_state_dict(state, strict=True)
