"""Model configuration: the hyper-parameters that fix FNet's shape and threshold."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

ThresholdKind = Literal["l0", "l1"]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of FNet / IFNet (defaults are the published model's).

    Attributes:
        filters: feature channels F of every sparse code.
        kernel_size: odd spatial size of every convolution.
        iterations: iteration modules N per LZSC block (the published model uses 4).
        threshold: ``"l0"`` smooth l0 (sigmoidal hard) threshold, or ``"l1"`` soft threshold
            (the LCSC / ISTA ablation of the paper).
        gamma: steepness of the smooth l0 gate.
        alpha: shrinkage of the smooth l0 threshold above the gate.
    """

    filters: int = 64
    kernel_size: int = 9
    iterations: int = 4
    threshold: ThresholdKind = "l0"
    gamma: float = 100.0
    alpha: float = 0.1

    def __post_init__(self) -> None:
        if self.filters < 1:
            raise ValueError(f"filters must be >= 1, got {self.filters}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0, got {self.gamma}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if self.threshold not in ("l0", "l1"):
            raise ValueError(f"threshold must be 'l0' or 'l1', got {self.threshold!r}")

    @property
    def receptive_radius(self) -> int:
        """Pixels of context each output pixel depends on, in each direction.

        The longest convolution chain is LZSC_u (1 + 2N), Cu, LZSC_z (1 + 2N), Dz.
        """
        return (2 * (1 + 2 * self.iterations) + 2) * (self.kernel_size // 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
