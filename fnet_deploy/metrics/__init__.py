"""Image fusion quality metrics, in the ``paper`` and ``standard`` conventions (docs/metrics.md)."""

from fnet_deploy.metrics.gradient import average_gradient, qabf, spatial_frequency
from fnet_deploy.metrics.information import cross_entropy, entropy, mutual_information
from fnet_deploy.metrics.inputs import CONVENTIONS, Convention
from fnet_deploy.metrics.qcb import qcb
from fnet_deploy.metrics.registry import (
    METRIC_NAMES,
    METRICS,
    MetricSpec,
    Scores,
    compute_metrics,
)
from fnet_deploy.metrics.structural import psnr, scd, ssim, std_dev
from fnet_deploy.metrics.vif import vif, vifp

__all__ = [
    "CONVENTIONS",
    "METRICS",
    "METRIC_NAMES",
    "Convention",
    "MetricSpec",
    "Scores",
    "average_gradient",
    "compute_metrics",
    "cross_entropy",
    "entropy",
    "mutual_information",
    "psnr",
    "qabf",
    "qcb",
    "scd",
    "spatial_frequency",
    "ssim",
    "std_dev",
    "vif",
    "vifp",
]
