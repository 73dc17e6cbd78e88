"""Threshold (proximal) functions of the unrolled sparse-coding iterations.

Each is a pure function plus a thin ``nn.Module``, elementwise on tensors of any shape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fnet_deploy.model.config import ModelConfig


def smooth_l0(x: Tensor, theta: Tensor, gamma: float = 100.0, alpha: float = 0.1) -> Tensor:
    """Smooth l0 (sigmoidal hard) threshold of FNet.

    ``S(x) = sign(x) * (|x| - alpha*theta) * sigmoid(gamma * (|x| - theta))``, which equals the
    paper's ``sign(x)(|x| - alpha*theta) / (1 + exp(-gamma(|x| - theta)))`` but never overflows
    (the exp form does in float16 for small |x|).

    Args:
        x: any shape, any real range.
        theta: threshold, broadcastable to ``x`` (a scalar tensor in FNet), > 0.
        gamma: gate steepness.
        alpha: shrinkage factor applied to theta above the gate.

    Returns:
        Tensor shaped like ``x``.
    """
    magnitude = x.abs()
    return torch.sign(x) * (magnitude - alpha * theta) * torch.sigmoid(gamma * (magnitude - theta))


def soft_l1(x: Tensor, theta: Tensor) -> Tensor:
    """Soft threshold ``sign(x) * max(|x| - theta, 0)`` (the l1 / ISTA proximal operator).

    Args:
        x: any shape.
        theta: threshold broadcastable to ``x``, >= 0.

    Returns:
        Tensor shaped like ``x``.
    """
    return torch.sign(x) * torch.relu(x.abs() - theta)


class Threshold(nn.Module):
    """The threshold chosen by a :class:`ModelConfig`, applied as ``module(x, theta)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.threshold
        self.gamma = config.gamma
        self.alpha = config.alpha

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        if self.kind == "l0":
            return smooth_l0(x, theta, self.gamma, self.alpha)
        return soft_l1(x, theta)

    def extra_repr(self) -> str:
        if self.kind == "l0":
            return f"kind=l0, gamma={self.gamma}, alpha={self.alpha}"
        return "kind=l1"
