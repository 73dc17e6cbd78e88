"""Gradient metrics: SF and AG of the fused image, and the edge-transfer metric Qabf."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fnet_deploy.metrics.inputs import Convention, as_gray, as_triple, check_convention

# Sobel kernels applied by true convolution with zero padding ("same" size), as in the original
# MATLAB Qabf code; the sign convention fixes which way the orientation angles point.
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])

# Xydeas & Petrovic sigmoid constants for edge strength (g) and orientation (a), and the weight
# exponent L.
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8
QABF_L = 1.0


def spatial_frequency(fused: np.ndarray, convention: Convention = "paper") -> float:
    """SF: spatial frequency sqrt(RF^2 + CF^2) of the fused image (Eskicioglu and Fisher, 1995).

    Eskicioglu, Fisher, "Image quality measures and their performance", IEEE Trans. Commun. 43(12),
    1995. RF^2 and CF^2 are the mean squared differences between horizontally and vertically
    adjacent pixels.

    - ``paper``: each sum of squares is divided by its number of differences, H (W - 1) and
      (H - 1) W (the CDDFuse evaluator).
    - ``standard``: both sums are divided by H W, as in the original paper.

    ``fused``: H x W in [0, 255]. Range [0, 255 sqrt(2)]; 0 for a constant image. Higher is better.
    """
    convention = check_convention(convention)
    f = as_gray(fused, "fused")
    row_sq = np.square(np.diff(f, axis=1))
    col_sq = np.square(np.diff(f, axis=0))
    if convention == "paper":
        return float(np.sqrt(row_sq.mean() + col_sq.mean()))
    return float(np.sqrt((row_sq.sum() + col_sq.sum()) / f.size))


def average_gradient(fused: np.ndarray, convention: Convention = "paper") -> float:
    """AG: average gradient, the mean of sqrt((dF/dx^2 + dF/dy^2) / 2) over the fused image.

    Cui, Feng, Xu, Li, Chen, "Detail preserved fusion of visible and infrared images using regional
    saliency extraction and multi-scale image decomposition", Optics Communications 341, 2015.

    - ``paper``: central differences inside the image, one-sided differences on its border
      (``numpy.gradient``), mean over all H W pixels (the CDDFuse evaluator).
    - ``standard``: forward differences F(i+1, j) - F(i, j) and F(i, j+1) - F(i, j), mean over the
      (H - 1)(W - 1) pixels where both exist, as in Cui et al.

    ``fused``: H x W in [0, 255]. Range [0, 255]; 0 for a constant image. Higher is better.
    """
    convention = check_convention(convention)
    f = as_gray(fused, "fused")
    if convention == "paper":
        dy, dx = np.gradient(f)
    else:
        dy = np.diff(f, axis=0)[:, :-1]
        dx = np.diff(f, axis=1)[:-1, :]
    return float(np.mean(np.sqrt((dx * dx + dy * dy) / 2.0)))


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel edge strength g and orientation a = arctan(gy / gx) (pi / 2 where gx = 0)."""
    gx = ndimage.convolve(image, _SOBEL_X, mode="constant")
    gy = ndimage.convolve(image, _SOBEL_Y, mode="constant")
    strength = np.hypot(gx, gy)
    vertical = gx == 0
    ratio = np.divide(gy, gx, out=np.zeros_like(gy), where=~vertical)
    orientation = np.where(vertical, np.pi / 2, np.arctan(ratio))
    return strength, orientation


def _edge_preservation(
    g_source: np.ndarray,
    a_source: np.ndarray,
    g_fused: np.ndarray,
    a_fused: np.ndarray,
    convention: Convention,
) -> np.ndarray:
    """Per-pixel Q^SF = Q_g^SF * Q_a^SF of one source S in the fused image F, values in [0, 1)."""
    low = np.minimum(g_source, g_fused)
    high = np.maximum(g_source, g_fused)
    tie = g_source == g_fused
    strength = np.divide(low, high, out=np.zeros_like(low), where=~tie)
    strength[tie] = g_fused[tie] if convention == "paper" else 1.0
    orientation = 1.0 - np.abs(a_source - a_fused) / (np.pi / 2)
    q_strength = QABF_TG / (1.0 + np.exp(QABF_KG * (strength - QABF_DG)))
    q_orientation = QABF_TA / (1.0 + np.exp(QABF_KA * (orientation - QABF_DA)))
    return q_strength * q_orientation


def qabf(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """Qabf (Q^{AB/F}): gradient-based edge information transferred from the sources to F.

    Xydeas, Petrovic, "Objective image fusion performance measure", Electronics Letters 36(4), 2000.
    Sobel edge strength g and orientation a = arctan(gy / gx) (pi / 2 where gx = 0), zero padding.
    For a source S: relative strength G^SF = min(g_S, g_F) / max(g_S, g_F), relative orientation
    A^SF = 1 - |a_S - a_F| / (pi / 2), Q^SF = Tg / (1 + e^(kg (G^SF - Dg))) *
    Ta / (1 + e^(ka (A^SF - Da))) with Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22,
    Da = 0.8, and Qabf = sum(Q^AF w_A + Q^BF w_B) / sum(w_A + w_B) with weights w = g^L, L = 1.

    - ``paper``: where g_S = g_F exactly, G^SF is g_F itself rather than 1 (the CDDFuse evaluator's
      rule; it only matters where the two strengths tie, and there G^SF >= 1 keeps Q_g near Tg).
    - ``standard``: G^SF = 1 where g_S = g_F.

    All images H x W in [0, 255]. Range [0, 1); about 0.975 when F equals both sources.
    NaN when neither source has any Sobel response, i.e. both are all zero (with zero padding, a
    non-zero constant image has edges along its border). Higher is better.
    """
    convention = check_convention(convention)
    f, a, b = as_triple(fused, ir, vis)
    g_f, a_f = _sobel(f)
    g_a, a_a = _sobel(a)
    g_b, a_b = _sobel(b)
    q_a = _edge_preservation(g_a, a_a, g_f, a_f, convention)
    q_b = _edge_preservation(g_b, a_b, g_f, a_f, convention)
    w_a = g_a**QABF_L
    w_b = g_b**QABF_L
    total = float(np.sum(w_a + w_b))
    if total == 0.0:
        return float("nan")
    return float(np.sum(q_a * w_a + q_b * w_b)) / total
