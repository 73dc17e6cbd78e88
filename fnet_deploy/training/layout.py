"""A run's output folder: where each of its files lives, and what the stages are called.

Files in the output folder (only the rank-0 process writes):

=============================  ==============================================================
``config.toml``                the full config of the latest invocation
``log.csv``                    one row every ``log.log_every`` iterations
``loss_curves.png``            the log drawn (when matplotlib is installed)
``state/stage{n}.safetensors`` training state, every ``log.checkpoint_every`` iterations, at
                               the end of the stage and on Ctrl-C / SIGTERM
``fnet_stage1.safetensors``    FNet (moving average) after stage I
``fnet.safetensors``           FNet (moving average) after stage II: the inference weights
``validation.csv``             scores on the validation sets (``--val-data``), per validation
``fnet_best.safetensors``      the stage-II moving average with the best validation score
``tensorboard/``               TensorBoard events, when TensorBoard is installed
=============================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGE_NAMES = {1: "stage I", 2: "stage II"}
"""How messages name each stage."""


@dataclass(frozen=True)
class RunLayout:
    """Paths of a run's files under its output folder."""

    out: Path

    @property
    def config(self) -> Path:
        return self.out / "config.toml"

    @property
    def log(self) -> Path:
        return self.out / "log.csv"

    @property
    def curves(self) -> Path:
        return self.out / "loss_curves.png"

    @property
    def validation(self) -> Path:
        return self.out / "validation.csv"

    @property
    def best(self) -> Path:
        """The stage-II weights with the best validation score."""
        return self.out / "fnet_best.safetensors"

    @property
    def tensorboard(self) -> Path:
        return self.out / "tensorboard"

    def state(self, stage: int) -> Path:
        """Training-state file of ``stage``."""
        return self.out / "state" / f"stage{stage}.safetensors"

    def weights(self, stage: int) -> Path:
        """Inference weights written at the end of ``stage``."""
        return self.out / ("fnet_stage1.safetensors" if stage == 1 else "fnet.safetensors")
