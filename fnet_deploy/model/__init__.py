"""FNet model: thresholds, LZSC blocks, FNet/IFNet, weights files.

The names below are imported on first use (PEP 562), so that importing a light submodule such
as :mod:`fnet_deploy.model.config` does not import PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnet_deploy.helpers.lazy import lazy_attributes

if TYPE_CHECKING:
    from fnet_deploy.model.config import ModelConfig
    from fnet_deploy.model.fnet import FNet, FusionTrace, IFNet
    from fnet_deploy.model.lzsc import LZSC, LZSCTrace
    from fnet_deploy.model.threshold import smooth_l0, soft_l1
    from fnet_deploy.model.weights import WeightsInfo, load_fnet, save_fnet

_HOMES = {
    "LZSC": "lzsc",
    "FNet": "fnet",
    "FusionTrace": "fnet",
    "IFNet": "fnet",
    "LZSCTrace": "lzsc",
    "ModelConfig": "config",
    "WeightsInfo": "weights",
    "load_fnet": "weights",
    "save_fnet": "weights",
    "smooth_l0": "threshold",
    "soft_l1": "threshold",
}
"""Each public name and the submodule that defines it."""

__all__ = [
    "LZSC",
    "FNet",
    "FusionTrace",
    "IFNet",
    "LZSCTrace",
    "ModelConfig",
    "WeightsInfo",
    "load_fnet",
    "save_fnet",
    "smooth_l0",
    "soft_l1",
]


__getattr__ = lazy_attributes(__name__, _HOMES)
