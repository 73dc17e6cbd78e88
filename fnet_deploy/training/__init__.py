"""Two-stage FNet training: data, losses, moving average, train state, distributed runs."""

from fnet_deploy.training.config import TrainConfig, load_config, to_toml, with_overrides
from fnet_deploy.training.layout import RunLayout
from fnet_deploy.training.reporter import Reporter
from fnet_deploy.training.stopping import TrainingDiverged, TrainingStopped
from fnet_deploy.training.trainer import TrainResult, train

__all__ = [
    "Reporter",
    "RunLayout",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingStopped",
    "load_config",
    "to_toml",
    "train",
    "with_overrides",
]
