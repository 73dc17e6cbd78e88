"""FNet (fusion) and IFNet (inverse fusion, training only)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.layers import conv
from fnet_deploy.model.lzsc import LZSC, LZSCTrace


@dataclass
class FusionTrace:
    """FNet's interpretable intermediates for one batch.

    Attributes:
        unique_ir: u, unique features of the IR input, B x F x H x W.
        unique_vis: v, unique features of the visible input, B x F x H x W.
        common: z, common features of both, B x F x H x W.
        rec_ir: Du(u), B x 1 x H x W.
        rec_common: Dz(z), B x 1 x H x W.
        rec_vis: Dv(v), B x 1 x H x W.
        fused: rec_ir + rec_common + rec_vis, B x 1 x H x W (unclamped).
        blocks: per block name (``unique_ir``, ``unique_vis``, ``common``) its LZSC trace.
    """

    unique_ir: Tensor
    unique_vis: Tensor
    common: Tensor
    rec_ir: Tensor
    rec_common: Tensor
    rec_vis: Tensor
    fused: Tensor
    blocks: dict[str, LZSCTrace]


class FNet(nn.Module):
    """FNet: fuses an IR image and a visible luminance image.

    ``u = LZSC_u(ir)``, ``v = LZSC_v(vis)``, ``z = LZSC_z([ir - Cu u, vis - Cv v])``,
    ``fused = Du u + Dz z + Dv v``.

    Inputs ``ir`` and ``vis`` are B x 1 x H x W in [0, 1] (any H, W); the output is B x 1 x H x W,
    nominally in [0, 1] (clamp before display).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        f, ks = config.filters, config.kernel_size
        self.unique_ir = LZSC(1, config)
        self.unique_vis = LZSC(1, config)
        self.common = LZSC(2, config)
        self.proj_ir = conv(f, 1, ks)
        self.proj_vis = conv(f, 1, ks)
        self.dec_ir = conv(f, 1, ks)
        self.dec_common = conv(f, 1, ks)
        self.dec_vis = conv(f, 1, ks)

    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        """Fused image, B x 1 x H x W, from ``ir`` and ``vis`` (B x 1 x H x W, [0, 1])."""
        u = self.unique_ir(ir)
        v = self.unique_vis(vis)
        z = self.common(self._common_input(ir, vis, u, v))
        return self.dec_ir(u) + self.dec_common(z) + self.dec_vis(v)

    def trace(self, ir: Tensor, vis: Tensor) -> FusionTrace:
        """Like :meth:`forward`, but returns every interpretable intermediate."""
        blocks = {"unique_ir": self.unique_ir.trace(ir), "unique_vis": self.unique_vis.trace(vis)}
        u, v = blocks["unique_ir"].codes[-1], blocks["unique_vis"].codes[-1]
        blocks["common"] = self.common.trace(self._common_input(ir, vis, u, v))
        z = blocks["common"].codes[-1]
        rec_ir, rec_common, rec_vis = self.dec_ir(u), self.dec_common(z), self.dec_vis(v)
        return FusionTrace(
            unique_ir=u,
            unique_vis=v,
            common=z,
            rec_ir=rec_ir,
            rec_common=rec_common,
            rec_vis=rec_vis,
            fused=rec_ir + rec_common + rec_vis,
            blocks=blocks,
        )

    def _common_input(self, ir: Tensor, vis: Tensor, u: Tensor, v: Tensor) -> Tensor:
        return torch.cat((ir - self.proj_ir(u), vis - self.proj_vis(v)), dim=1)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel depends on, in each direction
        (:attr:`ModelConfig.receptive_radius`)."""
        return self.config.receptive_radius


class IFNet(nn.Module):
    """IFNet: splits a fused image back into IR and visible estimates (training stage I only).

    ``a = LZSC_1(fused)``, ``b = LZSC_2(fused)``, ``ir_hat = C1 a``, ``vis_hat = C2 b``.
    The authors' release applies C1 to both branches and leaves C2 unused; that is a bug, and here
    each branch has its own output convolution as the paper describes.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        f, ks = config.filters, config.kernel_size
        self.branch_ir = LZSC(1, config)
        self.branch_vis = LZSC(1, config)
        self.out_ir = conv(f, 1, ks)
        self.out_vis = conv(f, 1, ks)

    def forward(self, fused: Tensor) -> tuple[Tensor, Tensor]:
        """``(ir_hat, vis_hat)``, each B x 1 x H x W, from ``fused`` (B x 1 x H x W)."""
        return self.out_ir(self.branch_ir(fused)), self.out_vis(self.branch_vis(fused))
