"""Two-stage FNet training: data, losses, moving average, train state, distributed runs."""

from fnet_deploy.training.config import TrainConfig, load_config, to_toml, with_overrides
from fnet_deploy.training.trainer import (
    Reporter,
    RunLayout,
    TrainingDiverged,
    TrainingStopped,
    TrainResult,
    train,
)

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
