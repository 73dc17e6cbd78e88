"""PyTorch backend: FNet (training or deploy form) on CPU or CUDA, float32 or float16, eager or
replayed from CUDA graphs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from fnet_deploy.backends.base import OUTPUT_NAME, Runner
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model.config import ModelConfig
from fnet_deploy.model.deploy import to_deploy
from fnet_deploy.model.weights import load_fnet

Precision = Literal["fp32", "fp16"]
Form = Literal["deploy", "training"]
FORMS: tuple[Form, ...] = ("deploy", "training")


class TorchRunner(Runner):
    """Runs an FNet (given, or loaded from a weights file on activation) with PyTorch.

    Any module with FNet's ``forward(ir, vis) -> fused`` works, e.g. the deploy form.

    Args:
        model: a model, or a zero-argument callable / weights path that produces one.
        form: what a weights path is run as: ``deploy`` (:func:`fnet_deploy.model.deploy.
            to_deploy`: the same function with 30 instead of 62 convolutions, 1.4x faster on a
            CPU, see docs/performance.md) or ``training`` (the FNet as trained, the reference);
            a model or callable is run as it is.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp16`` computes in half precision (CUDA only); inputs and outputs stay
            float32.
        compile: run the model through ``torch.compile`` (the first call of each input shape
            compiles; warm up before timing).
        channels_last: keep activations in NHWC memory layout (faster convolutions on tensor
            cores).
        cuda_graph: capture the forward pass in a CUDA graph per input shape (on its first
            call, after two eager warm-up calls) and replay it: one launch per call instead of
            one per kernel (CUDA only).

    On CUDA the forward pass is also timed with CUDA events (:attr:`last_device_time`).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module] | str | Path,
        device: str = "cpu",
        precision: Precision = "fp32",
        *,
        form: Form = "deploy",
        compile: bool = False,
        channels_last: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        self._source = model
        self.device = torch.device(device)
        self.precision = precision
        self.form = form
        self.compile = compile
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.cuda_graph = cuda_graph
        self.model: nn.Module | None = None
        self._forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def _activate(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FnetError(
                f"torch backend: device {self.device} requested but CUDA is unavailable"
            )
        if self.precision == "fp16" and self.device.type != "cuda":
            raise FnetError("torch backend: fp16 needs a CUDA device (use fp32 on CPU)")
        if self.cuda_graph and self.device.type != "cuda":
            raise FnetError("torch backend: CUDA graphs need a CUDA device")
        source = self._source
        if isinstance(source, nn.Module):
            model = source
        elif isinstance(source, (str, Path)):
            trained = load_fnet(source)[0]
            model = to_deploy(trained) if self.form == "deploy" else trained
        else:
            model = source()
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        config = getattr(model, "config", None)
        self.model_config = config if isinstance(config, ModelConfig) else None
        self.model = model.to(self.device, dtype).eval()
        if self.memory_format is torch.channels_last:
            # Module.to accepts memory_format at run time; torch's type stubs omit it.
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        forward = torch.compile(self.model) if self.compile else self.model
        self._forward = GraphedForward(forward, self.device) if self.cuda_graph else forward

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.model is not None and self._forward is not None
        dtype = next(self.model.parameters()).dtype
        ir, vis = (
            torch.from_numpy(np.ascontiguousarray(feed[name]))
            .to(self.device, dtype)
            .contiguous(memory_format=self.memory_format)
            for name in ("ir", "vis")
        )
        with torch.inference_mode():
            if self.device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fused = self._forward(ir, vis)
                end.record()
                end.synchronize()
                self.last_device_time = start.elapsed_time(end) / 1e3
            else:
                fused = self._forward(ir, vis)
            out = fused.float().cpu().numpy()
        return {OUTPUT_NAME: out}

    def _deactivate(self) -> None:
        self.model = None
        self._forward = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class GraphedForward:
    """``forward(ir, vis)`` replayed from one CUDA graph per input shape and dtype.

    The first call of a shape runs ``forward`` twice eagerly on a side stream (cuDNN picks its
    algorithms, the allocator settles), then captures one call into a graph with its own input
    buffers. Every call copies the inputs into those buffers and replays the graph; the result
    is the graph's output buffer, overwritten by the next call of that shape.
    """

    def __init__(
        self, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device
    ) -> None:
        self.forward = forward
        self.device = device
        self._graphs: dict[
            tuple[tuple[int, ...], torch.dtype],
            tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor],
        ] = {}

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        key = (tuple(ir.shape), ir.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(ir, vis)
        graph, static_ir, static_vis, out = entry
        static_ir.copy_(ir)
        static_vis.copy_(vis)
        graph.replay()
        return out

    def _capture(
        self, ir: torch.Tensor, vis: torch.Tensor
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]:
        static_ir, static_vis = ir.clone(), vis.clone()
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(2):
                self.forward(static_ir, static_vis)
        main.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self.forward(static_ir, static_vis)
        return graph, static_ir, static_vis, out
