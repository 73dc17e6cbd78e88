"""Sobel gradients and SSIM in plain PyTorch, their kernels built once per device and dtype.

The training losses (:mod:`fnet_deploy.training.losses`) are built on these. After the first
call on a device no tensor is created from host data, so a training step that uses them can be
captured in a CUDA graph (a host-to-device copy during capture is an error). The conventions are
those of kornia's ``spatial_gradient`` and ``metrics.ssim``, which the losses used before;
``tests/test_losses.py`` checks them against definitions written out independently.

Images are B x C x H x W of any floating dtype.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
"""The raw 3x3 Sobel kernel of d/dx (cross-correlation: a rising ramp gives a positive value);
d/dy is its transpose."""

SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@functools.cache
def _sobel_kernels(device: torch.device, dtype: torch.dtype, normalized: bool) -> Tensor:
    """``(d/dx, d/dy)`` Sobel kernels as a 2 x 1 x 3 x 3 convolution weight (/ 8 if
    ``normalized``: exact, a power of two)."""
    gx = torch.tensor(SOBEL_X, dtype=torch.float64)
    kernels = torch.stack((gx, gx.T))[:, None]
    if normalized:
        kernels = kernels / 8.0
    return kernels.to(device=device, dtype=dtype)


@functools.cache
def _gaussian(device: torch.device, dtype: torch.dtype, size: int) -> Tensor:
    """The normalised ``size`` x ``size`` Gaussian window (sigma :data:`SSIM_SIGMA`, centred,
    sum 1) as a 1 x 1 x size x size convolution weight."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    taps = taps / taps.sum()
    return torch.outer(taps, taps)[None, None].to(device=device, dtype=dtype)


def _replicate_pad(x: Tensor) -> Tensor:
    """``x`` (N x C x H x W) with its outermost rows, then columns, repeated once on each side:
    N x C x (H + 2) x (W + 2), the values of ``F.pad(x, (1, 1, 1, 1), mode="replicate")``.

    Built from slices and concatenations, whose backward pass sums each border pixel's
    gradients in a fixed order. ``F.pad``'s own replicate backward adds them with atomics on
    CUDA, so two runs of the same training step (eager and CUDA-graph replay) could differ by
    rounding.
    """
    rows = torch.cat((x[..., :1, :], x, x[..., -1:, :]), dim=-2)
    return torch.cat((rows[..., :1], rows, rows[..., -1:]), dim=-1)


def sobel(x: Tensor, *, normalized: bool, border: str) -> Tensor:
    """Sobel responses of every channel of ``x``: B x C x 2 x H x W holding (d/dx, d/dy).

    Args:
        x: B x C x H x W.
        normalized: divide the kernels by 8 (a ramp of slope s gives s).
        border: ``"replicate"`` (kornia's convention) or ``"zero"`` padding by one pixel.
    """
    batch, channels, height, width = x.shape
    planes = x.reshape(batch * channels, 1, height, width)
    planes = _replicate_pad(planes) if border == "replicate" else F.pad(planes, (1, 1, 1, 1))
    grad = F.conv2d(planes, _sobel_kernels(x.device, x.dtype, normalized))
    return grad.reshape(batch, channels, 2, height, width)


def _blur(x: Tensor, size: int, positions: str) -> Tensor:
    """Gaussian blur of every channel: over the valid positions (H, W shrink by ``size - 1``)
    or, for ``positions="same"``, at every pixel with the image zero-padded by ``size // 2``.

    One depthwise convolution over all channels (several times faster on CPUs than a
    convolution per single-channel plane, and one kernel on a GPU).
    """
    channels = x.shape[1]
    window = _gaussian(x.device, x.dtype, size).expand(channels, 1, size, size)
    padding = size // 2 if positions == "same" else 0
    return F.conv2d(x, window, padding=padding, groups=channels)


def ssim_map(x: Tensor, y: Tensor, window: int, positions: str = "valid") -> Tensor:
    """SSIM (Wang et al. 2004) of ``x`` and ``y`` (B x C x H x W, data range 1) per position.

    Gaussian window (sigma 1.5, sum 1), C1 = 0.01^2, C2 = 0.03^2, no extra epsilon.

    Args:
        x, y: B x C x H x W.
        window: edge of the Gaussian window (odd).
        positions: ``"valid"``: every position where the window fits (MATLAB's reference,
            B x C x (H - window + 1) x (W - window + 1)); ``"same"``: every pixel, the local
            moments taken over the zero-padded images (pytorch-ssim, which the authors' stage-II
            loss uses), B x C x H x W.
    """
    channels = x.shape[1]
    moments = _blur(torch.cat((x, y, x * x, y * y, x * y), dim=1), window, positions)
    mx, my, xx, yy, xy = moments.split(channels, dim=1)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    numerator = (2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)
    return numerator / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
