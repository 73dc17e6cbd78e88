"""What one FNet forward must compute and move, independent of how it is run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.fnet import FNet


@dataclass(frozen=True)
class ForwardCost:
    """Work of one forward pass.

    Attributes:
        flops: multiply-adds x 2 of every convolution (pointwise work is not counted).
        activation_bytes: bytes read and written by the convolutions if each reads its input and
            writes its output once (no fusion across layers) at ``bytes_per_element``.
        io_bytes: the inputs read and the output written, the least any implementation moves.
    """

    flops: float
    activation_bytes: float
    io_bytes: float


def forward_cost(
    config: ModelConfig, height: int, width: int, batch: int = 1, bytes_per_element: int = 4
) -> ForwardCost:
    """Cost of ``FNet(config)`` on ``batch`` pairs of ``height`` x ``width`` frames.

    Counted by tracing a small input through the training form and scaling by pixel count (the
    model is fully convolutional, so every convolution's cost is linear in the pixel count).
    """
    probe = 8
    model = FNet(config)
    elements = [0]
    macs = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        assert isinstance(module, nn.Conv2d)
        elements[0] += inputs[0].numel() + output.numel()
        macs[0] += module.weight.numel() * output.shape[-2] * output.shape[-1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, probe, probe), torch.zeros(1, 1, probe, probe))
    finally:
        for handle in handles:
            handle.remove()
    scale = batch * height * width / (probe * probe)
    return ForwardCost(
        flops=2.0 * macs[0] * scale,
        activation_bytes=elements[0] * scale * bytes_per_element,
        io_bytes=3.0 * batch * height * width * bytes_per_element,
    )
