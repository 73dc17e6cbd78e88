"""Training losses of both stages (docs/model.md §5), on the filters of
:mod:`fnet_deploy.training.filters` (plain PyTorch, capturable in a CUDA graph).

Conventions (each checked against an independent definition in ``tests/test_losses.py``):

- :func:`spatial_gradient` is the normalised Sobel (kernels divided by 8, so a ramp of slope s
  gives s), x and y, with a *replicated* border: kornia's ``spatial_gradient``, which the
  authors' stage-I loss uses. On the outermost pixel ring it differs from zero padding.
- :func:`sobel_l1` is ``|Gx * x| + |Gy * x|`` with the raw 3x3 Sobel kernels and *zero* padding,
  as in the authors' stage-II loss (there: kornia on a zero-padded image, the extra ring dropped,
  which is the same thing).
- :func:`ssim` is Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, C1 = 0.01^2,
  C2 = 0.03^2 (data range 1), no extra epsilon, averaged to one number over either every pixel
  with the local moments of the *zero-padded* images (``"same"``: pytorch-ssim, the form of the
  authors' stage-II loss and the default, ``stage2.ssim_positions``) or the *valid* window
  positions only (``"valid"``: MATLAB's ``filter2(..., 'valid')``).

Images are B x 1 x H x W in [0, 1]; every loss is a scalar tensor (mean absolute errors are means
over all elements of the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fnet_deploy.training.config import SSIM_WINDOW, SsimPositions, StageTwoConfig
from fnet_deploy.training.filters import sobel, ssim_map


def spatial_gradient(x: Tensor) -> Tensor:
    """Normalised Sobel gradient of ``x`` (B x C x H x W): B x C x 2 x H x W holding (dx, dy).

    Replicated border (kornia's convention).
    """
    return sobel(x, normalized=True, border="replicate")


def sobel_l1(x: Tensor) -> Tensor:
    """``|Gx * x| + |Gy * x|`` with raw 3x3 Sobel kernels and zero padding; shaped like ``x``."""
    grad = sobel(x, normalized=False, border="zero")
    return grad[:, :, 0].abs() + grad[:, :, 1].abs()


def ssim(x: Tensor, y: Tensor, positions: SsimPositions = "same") -> Tensor:
    """Mean SSIM of ``x`` and ``y`` (B x C x H x W, range 1, H and W >= 11), a scalar tensor,
    over ``positions`` (``"same"``: every pixel, zero-padded moments; ``"valid"``: where the
    window fits)."""
    return ssim_map(x, y, SSIM_WINDOW, positions).mean()


def reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target|_1 + |grad(pred) - grad(target)|_1`` (means, :func:`spatial_gradient`)."""
    return F.l1_loss(pred, target) + F.l1_loss(spatial_gradient(pred), spatial_gradient(target))


@dataclass
class LossTerms:
    """A loss to minimise and its named parts (``total`` is their sum)."""

    total: Tensor
    parts: dict[str, Tensor]


def stage_one_loss(ir: Tensor, vis: Tensor, ir_hat: Tensor, vis_hat: Tensor) -> LossTerms:
    """Inverse-fusion loss ``L(ir_hat, ir) + L(vis_hat, vis)`` (:func:`reconstruction_loss`).

    Parts: ``rec_ir``, ``rec_vis``.
    """
    rec_ir = reconstruction_loss(ir_hat, ir)
    rec_vis = reconstruction_loss(vis_hat, vis)
    return LossTerms(total=rec_ir + rec_vis, parts={"rec_ir": rec_ir, "rec_vis": rec_vis})


def gradient_weights(ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor]:
    """``(wA, wB)``: each source's share of the batch's mean Sobel magnitude (:func:`sobel_l1`).

    ``wA = mean(sobel(ir)) / (mean(sobel(ir)) + mean(sobel(vis)))``, ``wB = 1 - wA``, over the
    whole batch as the authors computed it; 0.5 each when both are flat (the formula is 0/0).
    """
    grad_ir, grad_vis = sobel_l1(ir).mean(), sobel_l1(vis).mean()
    total = grad_ir + grad_vis
    flat = total <= 0
    w_ir = torch.where(flat, torch.full_like(total, 0.5), grad_ir / torch.where(flat, 1.0, total))
    return w_ir, 1 - w_ir


def stage_two_loss(
    ir: Tensor, vis: Tensor, fused: Tensor, weights: StageTwoConfig | None = None
) -> LossTerms:
    """Fusion loss of stage II.

    ``a |fused - max(ir, vis)|_1 + b |sobel(fused) - max(sobel(ir), sobel(vis))|_1
    + c (1 - (wA SSIM(ir, fused) + wB SSIM(vis, fused)))`` with (a, b, c) = (20, 20, 15) by
    default, (wA, wB) from :func:`gradient_weights` and SSIM over ``weights.ssim_positions``
    (the authors' zero-padded ``"same"`` form by default).

    Parts (weighted, summing to ``total``): ``intensity``, ``gradient``, ``ssim``.
    """
    weights = weights or StageTwoConfig()
    intensity = F.l1_loss(fused, torch.maximum(ir, vis))
    gradient = F.l1_loss(sobel_l1(fused), torch.maximum(sobel_l1(ir), sobel_l1(vis)))
    w_ir, w_vis = gradient_weights(ir, vis)
    positions = weights.ssim_positions
    structure = 1 - (w_ir * ssim(ir, fused, positions) + w_vis * ssim(vis, fused, positions))
    parts = {
        "intensity": weights.intensity_weight * intensity,
        "gradient": weights.gradient_weight * gradient,
        "ssim": weights.ssim_weight * structure,
    }
    return LossTerms(total=parts["intensity"] + parts["gradient"] + parts["ssim"], parts=parts)
