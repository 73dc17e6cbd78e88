"""What one FNet forward must compute and move, independent of how it is run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fnet_deploy.model.config import ModelConfig

if TYPE_CHECKING:  # torch is imported by forward_cost, which traces the model
    import torch
    from torch import nn


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
    import torch
    from torch import nn

    from fnet_deploy.model.fnet import FNet

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


INFERENCE_LIVE_MAPS = 12
"""Feature maps of ``filters`` channels alive at once in a gradient-free forward (the unique
codes of both inputs, the common block's code, pre-activation and convolution outputs, and the
backend's convolution workspace): the peak resident memory measured at 512x512 and 768x768 with
the published configuration was 9.3 maps; 12 keeps a margin."""
TRAINING_ACTIVATION_FACTOR = 4.6
"""Peak memory of one training step (FNet + IFNet forward and backward, stage I) over
:attr:`ForwardCost.activation_bytes` of FNet's forward, the largest ratio measured with the
published configuration (3.0 for 16 crops of 128 x 128, 4.6 for one of 256 x 256)."""


def inference_bytes(
    config: ModelConfig, height: int, width: int, batch: int = 1, bytes_per_element: int = 4
) -> float:
    """Peak memory of a gradient-free forward of ``batch`` pairs of ``height`` x ``width``."""
    return INFERENCE_LIVE_MAPS * config.filters * bytes_per_element * batch * height * width


def trace_bytes(config: ModelConfig, height: int, width: int, bytes_per_element: int = 4) -> float:
    """Memory that a full trace keeps (every iteration's pre-activation and code of the three
    blocks) on top of :func:`inference_bytes`, for one ``height`` x ``width`` pair."""
    maps = 3 * (config.iterations + 1) * 2
    return maps * config.filters * bytes_per_element * height * width


def training_bytes(config: ModelConfig, crop: int, batch: int) -> float:
    """Peak memory of one float32 training step on ``batch`` crops of ``crop`` x ``crop``."""
    cost = forward_cost(config, crop, crop, batch)
    return TRAINING_ACTIVATION_FACTOR * cost.activation_bytes
