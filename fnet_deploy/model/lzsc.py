"""LZSC: the learned, unrolled l0-regularised sparse-coding block of FNet."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.layers import Residual, conv
from fnet_deploy.model.threshold import Threshold


class IterationStep(nn.Module):
    """Weights of one step k of the unrolled iteration.

    ``encode`` is W_k (C -> F) applied to the block input; ``prev`` is the (D, U) pair applied to
    x_{k-1} (present for k >= 1); ``prev2`` the pair applied to x_{k-2} (present for k >= 2).
    """

    def __init__(self, channels: int, config: ModelConfig, k: int) -> None:
        super().__init__()
        f, ks = config.filters, config.kernel_size
        self.encode = conv(channels, f, ks)
        self.prev = Residual(channels, f, ks) if k >= 1 else None
        self.prev2 = Residual(channels, f, ks) if k >= 2 else None


@dataclass
class LZSCTrace:
    """Intermediates of one LZSC forward pass (for inspection, not for export).

    Attributes:
        pre: per step k = 0..N, the value fed to the threshold, B x F x H x W.
        codes: per step k = 0..N, the thresholded code x_k, B x F x H x W.
        thetas: thresholds theta_0..theta_N, shape (N + 1,).
        rhos: momentum weights rho_0..rho_N, shape (N + 1,) (rho_0 = 0 is unused).
    """

    pre: list[Tensor]
    codes: list[Tensor]
    thetas: Tensor
    rhos: Tensor


class LZSC(nn.Module):
    """Learned l0 sparse coding: maps a signal e (B x C x H x W) to a code (B x F x H x W).

    Step k = 0: ``x0 = S(W0 e; theta_0)``; k = 1: ``x1 = S((1 + rho_1)(x0 - U1 D1 x0) + W1 e)``;
    k >= 2: ``xk = S((1 + rho_k)(x_{k-1} - Ua Da x_{k-1}) - rho_k (x_{k-2} - Ub Db x_{k-2})
    + Wk e)``, with ``theta_k = softplus(w_theta k + b_theta)`` and
    ``rho_k = (softplus(w_rho k + b_rho) - softplus(b_rho)) / softplus(w_rho k + b_rho)``.
    Every step has its own weights. Output is x_N.
    """

    def __init__(self, channels: int, config: ModelConfig | None = None) -> None:
        super().__init__()
        config = config or ModelConfig()
        self.channels = channels
        self.config = config
        self.w_theta = nn.Parameter(torch.tensor([-0.5]))
        self.b_theta = nn.Parameter(torch.tensor([-2.0]))
        self.w_rho = nn.Parameter(torch.tensor([0.5]))
        self.b_rho = nn.Parameter(torch.tensor([0.0]))
        self.steps = nn.ModuleList(
            IterationStep(channels, config, k) for k in range(config.iterations + 1)
        )
        self.threshold = Threshold(config)

    def thresholds(self) -> Tensor:
        """theta_0..theta_N as a tensor of shape (N + 1,)."""
        k = torch.arange(len(self.steps), dtype=self.w_theta.dtype, device=self.w_theta.device)
        return softplus(self.w_theta * k + self.b_theta)

    def momenta(self) -> Tensor:
        """rho_0..rho_N as a tensor of shape (N + 1,), each in [0, 1); rho_0 = 0."""
        k = torch.arange(len(self.steps), dtype=self.w_rho.dtype, device=self.w_rho.device)
        grown = softplus(self.w_rho * k + self.b_rho)
        return (grown - softplus(self.b_rho)) / grown

    def forward(self, e: Tensor) -> Tensor:
        """Sparse code x_N (B x F x H x W) of ``e`` (B x C x H x W)."""
        return self._iterate(e, None)

    def trace(self, e: Tensor) -> LZSCTrace:
        """Run the block and keep every step's pre-threshold value and code."""
        record = LZSCTrace(pre=[], codes=[], thetas=self.thresholds(), rhos=self.momenta())
        self._iterate(e, record)
        return record

    def _iterate(self, e: Tensor, record: LZSCTrace | None) -> Tensor:
        thetas, rhos = self.thresholds(), self.momenta()
        x_prev2: Tensor | None = None
        x_prev: Tensor | None = None
        for k, step in enumerate(self.steps):
            assert isinstance(step, IterationStep)
            # Summation order follows the published implementation (momentum terms first, then
            # W_k e) so that float32 rounding matches it as closely as possible.
            if step.prev is not None and x_prev is not None:
                pre = (1 + rhos[k]) * step.prev(x_prev)
                if step.prev2 is not None and x_prev2 is not None:
                    pre = pre - rhos[k] * step.prev2(x_prev2)
                pre = pre + step.encode(e)
            else:
                pre = step.encode(e)
            x = self.threshold(pre, thetas[k])
            if record is not None:
                record.pre.append(pre)
                record.codes.append(x)
            x_prev2, x_prev = x_prev, x
        assert x_prev is not None
        return x_prev
