"""Two-stage FNet training: data, losses, moving average, train state, distributed runs.

The names below are imported on first use (PEP 562), so that importing a light submodule such
as :mod:`fnet_deploy.training.config` (``fnet-deploy train --help``) does not import PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnet_deploy.helpers.lazy import lazy_attributes

if TYPE_CHECKING:
    from fnet_deploy.training.config import TrainConfig, load_config, to_toml, with_overrides
    from fnet_deploy.training.layout import RunLayout
    from fnet_deploy.training.reporter import Reporter
    from fnet_deploy.training.stopping import TrainingDiverged, TrainingStopped
    from fnet_deploy.training.trainer import TrainResult, train

_HOMES = {
    "Reporter": "reporter",
    "RunLayout": "layout",
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "TrainingDiverged": "stopping",
    "TrainingStopped": "stopping",
    "load_config": "config",
    "to_toml": "config",
    "train": "trainer",
    "with_overrides": "config",
}
"""Each public name and the submodule that defines it."""

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


__getattr__ = lazy_attributes(__name__, _HOMES)
