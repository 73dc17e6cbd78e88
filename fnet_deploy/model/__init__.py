"""FNet model: thresholds, LZSC blocks, FNet/IFNet, weights files."""

from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.fnet import FNet, FusionTrace, IFNet
from fnet_deploy.model.lzsc import LZSC, LZSCTrace
from fnet_deploy.model.threshold import smooth_l0, soft_l1
from fnet_deploy.model.weights import WeightsInfo, load_fnet, save_fnet

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
