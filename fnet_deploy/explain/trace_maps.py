"""The numbers behind the explain figures, computed from :meth:`FNet.trace`.

Definitions (one image; a code x has F channels over H x W pixels):

- channel energy: ``E_c = mean over pixels of x_c^2``, shape (F,);
- energy map: ``M(p) = sum over channels of x_c(p)^2``, shape (H, W); so ``mean(M) = sum(E)``;
- top channels: channel indices by decreasing energy (ties keep the lower index first);
- suppressed share of step k: the share of entries whose pre-threshold value has
  ``|pre| < theta_k``. There the smooth l0 gate is below 1/2 and the code's magnitude stays below
  ``max(alpha, (1 - alpha) / 2) * theta_k`` (0.45 theta_k for the published alpha = 0.1); the l1
  soft threshold sets them to exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fnet_deploy.model.fnet import FNet, FusionTrace

BLOCKS: tuple[str, ...] = ("unique_ir", "unique_vis", "common")
"""LZSC blocks of FNet, as named in :attr:`FusionTrace.blocks`."""

RECONSTRUCTIONS: tuple[str, ...] = ("rec_ir", "rec_common", "rec_vis")
"""Decoder outputs Du(u), Dz(z), Dv(v) whose sum is the fused image."""


@dataclass
class FeatureMaps:
    """One sparse code (u, v or z) summarised for display.

    Attributes:
        channel_energy: (F,) float64, mean squared value of each channel.
        energy_map: H x W float32, sum over channels of the squared code.
        top_channels: (n,) int, the n channels of highest energy, strongest first.
        top_maps: n x H x W float32, those channels' code values (signed).
    """

    channel_energy: np.ndarray
    energy_map: np.ndarray
    top_channels: np.ndarray
    top_maps: np.ndarray


@dataclass
class ThresholdHistogram:
    """Pre- and post-threshold values of one block at one step, binned on shared edges.

    Attributes:
        step: the iteration index k (N for the block's output).
        theta: theta_k.
        bin_edges: (B + 1,) float64 edges, symmetric about 0 and equally spaced in
            ``asinh(value / theta)`` (linear within about +-theta, logarithmic in the tails).
        pre_counts: (B,) int64 counts of the values fed to the threshold.
        post_counts: (B,) int64 counts of the thresholded code.
        suppressed_share: share of entries with ``|pre| < theta``.
    """

    step: int
    theta: float
    bin_edges: np.ndarray
    pre_counts: np.ndarray
    post_counts: np.ndarray
    suppressed_share: float


@dataclass
class Explanation:
    """Everything the explain figures show, for one image pair (batch item 0 of a trace).

    Attributes:
        ir: H x W float32 [0, 1], the IR input.
        vis: H x W float32 [0, 1], the visible luminance input.
        features: block name (:data:`BLOCKS`) -> its output code summarised.
        reconstructions: ``rec_ir``, ``rec_common``, ``rec_vis`` and ``fused`` (their sum,
            unclamped), each H x W float32.
        thetas: block name -> (N + 1,) float64 thresholds theta_0..theta_N.
        rhos: block name -> (N + 1,) float64 momentum weights rho_0..rho_N.
        suppressed: block name -> (N + 1,) float64 suppressed share at each step.
        histograms: block name -> its last step's :class:`ThresholdHistogram`.
    """

    ir: np.ndarray
    vis: np.ndarray
    features: dict[str, FeatureMaps]
    reconstructions: dict[str, np.ndarray]
    thetas: dict[str, np.ndarray]
    rhos: dict[str, np.ndarray]
    suppressed: dict[str, np.ndarray]
    histograms: dict[str, ThresholdHistogram]


def channel_energy(code: np.ndarray) -> np.ndarray:
    """(F,) float64 mean squared value per channel of a F x H x W code."""
    flat = code.reshape(code.shape[0], -1).astype(np.float64)
    return np.einsum("ij,ij->i", flat, flat) / flat.shape[1]


def energy_map(code: np.ndarray) -> np.ndarray:
    """H x W float32 sum over channels of the squared F x H x W code."""
    return np.einsum("chw,chw->hw", code, code, dtype=np.float64).astype(np.float32)


def top_channels(energies: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest ``energies`` (all if fewer), largest first, stable."""
    return np.argsort(-energies, kind="stable")[: max(0, count)]


def feature_maps(code: np.ndarray, count: int) -> FeatureMaps:
    """Summarise a F x H x W code: energies, energy map and its ``count`` strongest channels."""
    energies = channel_energy(code)
    top = top_channels(energies, count)
    return FeatureMaps(
        channel_energy=energies,
        energy_map=energy_map(code),
        top_channels=top,
        top_maps=code[top].astype(np.float32),
    )


def suppressed_share(pre: Tensor, theta: Tensor | float) -> float:
    """Share of entries of ``pre`` (any shape) with ``|pre| < theta``."""
    return float((pre.abs() < theta).double().mean())


def threshold_histogram(
    pre: Tensor, post: Tensor, theta: float, step: int, bins: int = 120
) -> ThresholdHistogram:
    """Histogram pre- and post-threshold values (any shape) of one step on shared edges."""
    if theta <= 0:
        raise ValueError(f"theta must be > 0, got {theta}")
    pre_np = pre.detach().double().cpu().numpy().ravel()
    post_np = post.detach().double().cpu().numpy().ravel()
    reach = max(float(np.abs(pre_np).max(initial=0.0)), float(np.abs(post_np).max(initial=0.0)))
    reach = max(reach, 2.0 * theta)
    half = np.sinh(np.linspace(0.0, np.arcsinh(reach / theta), bins // 2 + 1)) * theta
    half[-1] = reach
    edges = np.concatenate([-half[:0:-1], half])
    return ThresholdHistogram(
        step=step,
        theta=theta,
        bin_edges=edges,
        pre_counts=np.histogram(pre_np, edges)[0],
        post_counts=np.histogram(post_np, edges)[0],
        suppressed_share=suppressed_share(pre, theta),
    )


def explain_trace(
    trace: FusionTrace, ir: Tensor, vis: Tensor, top: int = 8, bins: int = 120
) -> Explanation:
    """Turn a :class:`FusionTrace` of ``(ir, vis)`` into the numbers of every explain figure.

    Args:
        trace: ``model.trace(ir, vis)``.
        ir: B x 1 x H x W, the IR input of the trace (item 0 is explained).
        vis: B x 1 x H x W, the visible luminance input.
        top: strongest channels to keep per code.
        bins: histogram bins (an even count; odd counts round down).
    """

    def image(t: Tensor) -> np.ndarray:
        return t[0].detach().float().cpu().numpy()

    codes = {"unique_ir": trace.unique_ir, "unique_vis": trace.unique_vis, "common": trace.common}
    reconstructions = {name: image(getattr(trace, name))[0] for name in RECONSTRUCTIONS}
    reconstructions["fused"] = image(trace.fused)[0]
    thetas, rhos, suppressed, histograms = {}, {}, {}, {}
    for name in BLOCKS:
        block = trace.blocks[name]
        block_thetas = block.thetas.detach().double().cpu()
        thetas[name] = block_thetas.numpy()
        rhos[name] = block.rhos.detach().double().cpu().numpy()
        suppressed[name] = np.array(
            [suppressed_share(pre[0], block.thetas[k]) for k, pre in enumerate(block.pre)]
        )
        last = len(block.pre) - 1
        histograms[name] = threshold_histogram(
            block.pre[last][0], block.codes[last][0], float(block_thetas[last]), last, bins
        )
    return Explanation(
        ir=image(ir)[0],
        vis=image(vis)[0],
        features={name: feature_maps(image(code), top) for name, code in codes.items()},
        reconstructions=reconstructions,
        thetas=thetas,
        rhos=rhos,
        suppressed=suppressed,
        histograms=histograms,
    )


def explain_images(
    model: FNet, ir: np.ndarray, vis: np.ndarray, top: int = 8, bins: int = 120
) -> Explanation:
    """Trace ``model`` on one pair of H x W float32 [0, 1] images and explain it.

    The model runs on the device its parameters are on, without gradients.
    """
    device = next(model.parameters()).device
    ir_t = torch.from_numpy(np.ascontiguousarray(ir, np.float32))[None, None].to(device)
    vis_t = torch.from_numpy(np.ascontiguousarray(vis, np.float32))[None, None].to(device)
    with torch.inference_mode():
        trace = model.eval().trace(ir_t, vis_t)
        return explain_trace(trace, ir_t, vis_t, top, bins)
