"""Histogram (information-theoretic) metrics: EN, MI and CE.

All three work on 256-bin grey-level histograms: the image values (range [0, 255]) are rounded to
the nearest integer grey level first, which changes nothing for 8-bit images.
"""

from __future__ import annotations

import numpy as np

from fnet_deploy.metrics.inputs import Convention, as_gray, as_triple, check_convention, grey_levels

LEVELS = 256


def _histogram(levels: np.ndarray) -> np.ndarray:
    """Normalised 256-bin histogram (probabilities summing to 1) of integer grey levels."""
    counts = np.bincount(levels.ravel(), minlength=LEVELS)
    return counts / levels.size


def _mutual_information_nats(x: np.ndarray, y: np.ndarray) -> float:
    """MI(X; Y) in nats from the 256 x 256 joint histogram of two integer grey-level images."""
    counts = np.bincount((x * LEVELS + y).ravel(), minlength=LEVELS * LEVELS)
    joint = counts.reshape(LEVELS, LEVELS) / x.size
    px = joint.sum(axis=1)
    py = joint.sum(axis=0)
    rows, cols = np.nonzero(joint)
    p = joint[rows, cols]
    mi = float(np.sum(p * (np.log(p) - np.log(px[rows]) - np.log(py[cols]))))
    return max(mi, 0.0)


def entropy(fused: np.ndarray, convention: Convention = "paper") -> float:
    """EN: Shannon entropy of the fused image's grey-level histogram, in bits.

    EN = -sum_k p_k log2 p_k over the 256 grey levels (Roberts, van Aardt and Ahmed, "Assessment of
    image fusion procedures using entropy, image quality, and multispectral classification",
    J. Appl. Remote Sens. 2, 2008). Both conventions are the same. ``fused``: H x W in [0, 255].
    Range [0, 8]; 0 for a constant image, 8 for a perfectly flat histogram. Higher is better.
    """
    check_convention(convention)
    p = _histogram(grey_levels(as_gray(fused, "fused")))
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def mutual_information(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """MI: MI(F, A) + MI(F, B), the fusion mutual information of Qu, Zhang and Yan (2002).

    Qu, Zhang, Yan, "Information measure for performance of image fusion", Electronics Letters
    38(7), 2002. Each term is the Shannon mutual information of the 256 x 256 joint grey-level
    histogram of the raw values (no rescaling). The two source terms are summed in both conventions.

    - ``paper``: natural logarithm (nats), as scikit-learn's ``mutual_info_score`` computes it on
      the flattened images (the CDDFuse evaluator). Range [0, 2 ln 256 = 11.09].
    - ``standard``: base-2 logarithm (bits), the unit of EN and CE. Range [0, 16].

    All images H x W in [0, 255]. 0 when F is constant. Higher is better.
    """
    convention = check_convention(convention)
    f, a, b = (grey_levels(x) for x in as_triple(fused, ir, vis))
    nats = _mutual_information_nats(f, a) + _mutual_information_nats(f, b)
    return nats if convention == "paper" else nats / float(np.log(2.0))


def _relative_entropy_bits(source: np.ndarray, fused: np.ndarray) -> float:
    """sum_k p_k log2(p_k / q_k) over the grey levels where both histograms are non-zero."""
    p = _histogram(source)
    q = _histogram(fused)
    both = (p > 0) & (q > 0)
    return float(np.sum(p[both] * np.log2(p[both] / q[both])))


def cross_entropy(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention = "paper"
) -> float:
    """CE: mean over the two sources of the cross-entropy of each source's histogram against F's.

    Bulanon, Burks and Alchanatis, "Image fusion of visible and thermal images for fruit detection",
    Biosystems Engineering 103(1), 2009, as the VIFB benchmark's MATLAB code defines it:
    CE(S, F) = sum_k p_S(k) log2(p_S(k) / p_F(k)) over the 256 grey levels where both histograms
    are non-zero (so, despite the name, a Kullback-Leibler divergence with the empty bins skipped),
    and CE = (CE(A, F) + CE(B, F)) / 2, in bits. Both conventions are the same.
    All images H x W in [0, 255]. 0 when F has the histograms of both sources; can be negative
    because bins empty in F are skipped. Lower is better.
    """
    check_convention(convention)
    f, a, b = (grey_levels(x) for x in as_triple(fused, ir, vis))
    return (_relative_entropy_bits(a, f) + _relative_entropy_bits(b, f)) / 2.0
