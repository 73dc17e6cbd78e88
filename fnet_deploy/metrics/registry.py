"""Metric names, their functions and conventions, and ``compute_metrics`` for one image triple."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fnet_deploy.metrics.gradient import average_gradient, qabf, spatial_frequency
from fnet_deploy.metrics.information import cross_entropy, entropy, mutual_information
from fnet_deploy.metrics.inputs import Convention, as_triple, check_convention
from fnet_deploy.metrics.qcb import qcb
from fnet_deploy.metrics.structural import psnr, scd, ssim, std_dev
from fnet_deploy.metrics.vif import vif

PairMetric = Callable[[np.ndarray, np.ndarray, np.ndarray, Convention], float]
"""``(fused, ir, vis, convention) -> value``; all images H x W in [0, 255]."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its function, direction, and what each convention means for it."""

    name: str
    function: PairMetric
    higher_is_better: bool
    paper: str
    standard: str


def _fused_only(function: Callable[[np.ndarray, Convention], float]) -> PairMetric:
    def metric(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, convention: Convention) -> float:
        return function(fused, convention)

    return metric


_SPECS = (
    MetricSpec("EN", _fused_only(entropy), True,
               "entropy of F, bits, 256 bins", "same as paper"),
    MetricSpec("SD", _fused_only(std_dev), True,
               "population standard deviation of F", "same as paper"),
    MetricSpec("SF", _fused_only(spatial_frequency), True,
               "squared differences averaged over each direction's count",
               "squared differences divided by H W (Eskicioglu and Fisher)"),
    MetricSpec("AG", _fused_only(average_gradient), True,
               "central differences (numpy.gradient), mean over H W",
               "forward differences, mean over (H-1)(W-1) (Cui et al.)"),
    MetricSpec("MI", mutual_information, True,
               "MI(F,A) + MI(F,B), nats, 256 x 256 joint histogram",
               "MI(F,A) + MI(F,B), bits"),
    MetricSpec("CE", cross_entropy, False,
               "(CE(A,F) + CE(B,F)) / 2, bits, 256 bins (VIFB)", "same as paper"),
    MetricSpec("SCD", scd, True,
               "corr(F-B, A) + corr(F-A, B)", "same as paper"),
    MetricSpec("VIF", vif, True,
               "VIF(A,F) + VIF(B,F), multi-scale pixel VIF, sigma_n^2 = 2",
               "(VIF(A,F) + VIF(B,F)) / 2"),
    MetricSpec("Qabf", qabf, True,
               "Xydeas-Petrovic, tied strengths keep g_F (CDDFuse evaluator)",
               "Xydeas-Petrovic, tied strengths give 1"),
    MetricSpec("Qcb", qcb, True,
               "Chen-Blum as in VIFB's MATLAB code", "same as paper"),
    MetricSpec("SSIM", ssim, True,
               "SSIM(F,A) + SSIM(F,B), 7x7 uniform window, data range 2",
               "(SSIM(F,A) + SSIM(F,B)) / 2, 11x11 Gaussian sigma 1.5, data range 255"),
    MetricSpec("PSNR", psnr, True,
               "10 log10(max(F)^2 / MSE), MSE averaged over A and B",
               "10 log10(255^2 / MSE), MSE averaged over A and B"),
)  # fmt: skip

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
"""All metrics by name, in the order reports list them."""

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


def check_metric_names(names: Sequence[str] | None) -> tuple[str, ...]:
    """Return ``names`` (all metrics when ``None``), raising ``ValueError`` for an unknown one."""
    if names is None:
        return METRIC_NAMES
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected names from {list(METRIC_NAMES)}")
    return tuple(names)


@dataclass(frozen=True)
class Scores:
    """Metric values of one fused image, and the convention that produced them."""

    convention: Convention
    values: dict[str, float]


def compute_metrics(
    fused: np.ndarray,
    ir: np.ndarray,
    vis: np.ndarray,
    convention: Convention = "paper",
    names: Sequence[str] | None = None,
) -> Scores:
    """Compute metrics of fused F against sources A = ``ir`` and B = ``vis``.

    All images are H x W grey arrays with values in [0, 255] (``uint8`` or float). ``names``
    selects metrics from ``METRIC_NAMES`` (default: all, in that order). Returns the values with
    the convention that made them.
    """
    convention = check_convention(convention)
    selected = check_metric_names(names)
    f, a, b = as_triple(fused, ir, vis)
    values = {name: METRICS[name].function(f, a, b, convention) for name in selected}
    return Scores(convention=convention, values=values)
