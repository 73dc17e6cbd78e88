"""PyTorch backend: FNet on CPU or CUDA, float32 or float16."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fnet_deploy.errors import FnetError
from fnet_deploy.model.checkpoint import load_fnet
from fnet_deploy.model.fnet import FNet
from fnet_deploy.runtime.backends.base import OUTPUT_NAME, Runner

Precision = Literal["fp32", "fp16"]


class TorchRunner(Runner):
    """Runs an FNet (given, or loaded from a weights file on activation) with PyTorch.

    Args:
        model: a model, or a zero-argument callable / weights path that produces one.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp16`` computes in half precision (CUDA only); inputs and outputs stay
            float32.
    """

    name = "torch"

    def __init__(
        self,
        model: FNet | Callable[[], FNet] | str | Path,
        device: str = "cpu",
        precision: Precision = "fp32",
    ) -> None:
        super().__init__()
        self._source = model
        self.device = torch.device(device)
        self.precision = precision
        self.model: FNet | None = None

    def _activate(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FnetError(
                f"torch backend: device {self.device} requested but CUDA is unavailable"
            )
        if self.precision == "fp16" and self.device.type != "cuda":
            raise FnetError("torch backend: fp16 needs a CUDA device (use fp32 on CPU)")
        source = self._source
        if isinstance(source, FNet):
            model = source
        elif isinstance(source, (str, Path)):
            model = load_fnet(source)[0]
        else:
            model = source()
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.model = model.to(self.device, dtype).eval()

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.model is not None
        dtype = next(self.model.parameters()).dtype
        ir = torch.from_numpy(np.ascontiguousarray(feed["ir"])).to(self.device, dtype)
        vis = torch.from_numpy(np.ascontiguousarray(feed["vis"])).to(self.device, dtype)
        with torch.inference_mode():
            fused = self.model(ir, vis).float().cpu().numpy()
        return {OUTPUT_NAME: fused}

    def _deactivate(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
