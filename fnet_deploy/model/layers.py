"""Convolution building blocks shared by LZSC, FNet and IFNet."""

from __future__ import annotations

from torch import Tensor, nn


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Bias-free 'same' convolution, stride 1, zero padding, Xavier-uniform initialised.

    Padding is given explicitly (``kernel_size // 2``), which equals ``padding='same'`` for odd
    kernels and exports to a cleaner ONNX graph.
    """
    layer = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2, bias=False
    )
    nn.init.xavier_uniform_(layer.weight)
    return layer


class Residual(nn.Module):
    """``x - up(down(x))``: the reconstruction residual of a code through a dictionary.

    ``down`` maps the code (B x F x H x W) to the signal space (B x C x H x W) and ``up`` back;
    the result is shaped like ``x``.
    """

    def __init__(self, channels: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.down = conv(filters, channels, kernel_size)
        self.up = conv(channels, filters, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.up(self.down(x))
