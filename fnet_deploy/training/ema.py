"""Exponential moving average of a model's weights (the copy saved for inference)."""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


class ModelEMA:
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every optimiser step.

    The average starts as a copy of the model (no warm-up correction, as in the paper's recipe).
    Floating-point parameters and buffers are averaged; other buffers are copied.

    Args:
        model: the model being trained (any ``nn.Module``, not wrapped in DDP).
        decay: in [0, 1); 0 makes the average follow the model exactly.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - self.decay)
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
