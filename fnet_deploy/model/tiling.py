"""Fusing images larger than memory allows, tile by tile, with an exact result."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Forward = Callable[[Tensor, Tensor], Tensor]


def tiled_forward(forward: Forward, ir: Tensor, vis: Tensor, tile: int, margin: int) -> Tensor:
    """Run ``forward`` on overlapping windows and stitch the centres.

    Each output tile of at most ``tile`` x ``tile`` pixels is computed from a window that extends
    ``margin`` pixels beyond it on every side (clipped at the image border, where the model's own
    zero padding applies as in a full-image run). With ``margin`` at least the model's receptive
    radius (:attr:`FNet.receptive_radius`) the result equals the untiled forward up to float
    rounding.

    Args:
        forward: ``(ir, vis) -> fused`` on B x 1 x h x w tensors.
        ir: B x 1 x H x W.
        vis: B x 1 x H x W.
        tile: output tile edge in pixels (> 0).
        margin: context pixels added on each side (>= 0).

    Returns:
        B x 1 x H x W, the stitched output.
    """
    if tile <= 0 or margin < 0:
        raise ValueError(f"tile must be > 0 and margin >= 0, got tile={tile}, margin={margin}")
    height, width = ir.shape[-2:]
    out = torch.empty_like(ir)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            wy0, wx0 = max(y0 - margin, 0), max(x0 - margin, 0)
            wy1, wx1 = min(y1 + margin, height), min(x1 + margin, width)
            window = forward(ir[..., wy0:wy1, wx0:wx1], vis[..., wy0:wy1, wx0:wx1])
            out[..., y0:y1, x0:x1] = window[..., y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return out
