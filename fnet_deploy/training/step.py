"""One training iteration on fixed input buffers, run eagerly or replayed from a CUDA graph.

:class:`TrainStep` holds the body of an iteration (forward and loss, backward, Adam step, moving
average update) as one function of static tensors: the inputs ``ir`` and ``vis`` that the batch
source fills, and the moving-average weight. Eagerly, the body runs every iteration. With a CUDA
graph, the body runs eagerly for :data:`WARMUP_STEPS` real iterations on a side stream (creating
Adam's state, letting cuDNN pick its algorithms, allocating the gradients), is then captured
once, and the capture is replayed for every later iteration: the same kernels on the same
buffers, without Python or a kernel launch per operation. Warm-up iterations are ordinary
training iterations, so the sample stream and the step count are the same either way.

Capture needs (:func:`graph_blocker` says which is missing): CUDA; one process (DDP's
all-reduce is not captured); a constant learning rate (a float fixed at capture); Adam created
with ``capturable=True`` (:func:`make_adam`); and losses that build no tensor from host data per
call (the filter kernels in :mod:`fnet_deploy.training.losses` are cached per device).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.optim import Adam

from fnet_deploy.training.config import OptimConfig, StepPrecision
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms

WARMUP_STEPS = 3
"""Eager iterations before a CUDA graph is captured."""

LossFunction = Callable[[Tensor, Tensor], LossTerms]
"""``(ir, vis) -> LossTerms``: the forward pass and the stage's loss on one batch."""


def graph_blocker(device: torch.device, processes: int, optim: OptimConfig) -> str | None:
    """Why the step cannot be captured in a CUDA graph here; ``None`` when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, this run is on {device.type}"
    if processes > 1:
        return "CUDA graphs are not used with several processes (DDP's all-reduce)"
    if optim.schedule != "constant" or optim.warmup:
        return "CUDA graphs need a constant learning rate (optim.schedule=constant, warmup=0)"
    return None


def make_adam(params: Iterator[nn.Parameter], optim: OptimConfig, capturable: bool) -> Adam:
    """Adam as the recipe sets it; ``capturable`` keeps its step count on the device and
    computes the bias correction there, so that the whole update can be captured (the same
    update up to rounding of the bias correction, and no host synchronisation)."""
    return Adam(params, lr=optim.lr, betas=optim.betas, capturable=capturable)


def set_capturable(optimizer: Adam, capturable: bool) -> None:
    """Switch a (restored) Adam between the host and device step count.

    A state saved by a captured run and resumed eagerly (or the reverse) carries the other
    setting in its parameter groups and step tensors; this puts both in the form ``capturable``
    needs.
    """
    for group in optimizer.param_groups:
        group["capturable"] = capturable
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            step = state.get("step")
            if isinstance(step, Tensor):
                where = param.device if capturable else torch.device("cpu")
                state["step"] = step.to(where, torch.float32)


class TrainStep:
    """Forward, loss, backward, Adam step and moving-average update on static input buffers.

    Args:
        loss: the forward pass and loss of the stage (:data:`LossFunction`).
        optimizer: Adam over the trainable parameters (capturable for a graph).
        ema: the moving average of ``fnet``.
        fnet: the FNet being trained (what ``ema`` averages).
        shape: B x 1 x crop x crop of a batch.
        device: the training device.
        graph: capture the step in a CUDA graph after the warm-up (see :func:`graph_blocker`).
        channels_last: NHWC input buffers (the model is converted by the caller).
        precision: ``fp32``, ``fp64`` (the model's own dtype, no autocast), or ``bf16`` autocast
            over forward and loss.
        clip_norm: clip the global L2 norm of the gradients of the optimiser's parameters to
            this before the step (0: no clipping).

    Attributes:
        ir, vis: the input buffers, B x 1 x crop x crop in [0, 1] (the model's dtype); fill
            them, then :meth:`run`.
        names: the loss parts' names, in the order :meth:`run` returns them after the total.
    """

    def __init__(
        self,
        loss: LossFunction,
        optimizer: Adam,
        ema: ModelEMA,
        fnet: nn.Module,
        shape: tuple[int, int, int, int],
        device: torch.device,
        *,
        graph: bool = False,
        channels_last: bool = False,
        precision: StepPrecision = "fp32",
        clip_norm: float = 0.0,
    ) -> None:
        self.loss = loss
        self.clip_norm = clip_norm
        self.optimizer = optimizer
        self.ema = ema
        self.fnet = fnet
        self.device = device
        self.graph_wanted = graph
        self.precision = precision
        layout = torch.channels_last if channels_last else torch.contiguous_format
        dtype = next(fnet.parameters()).dtype
        self.ir = torch.zeros(shape, device=device, dtype=dtype).contiguous(memory_format=layout)
        self.vis = torch.zeros(shape, device=device, dtype=dtype).contiguous(memory_format=layout)
        self.ema_weight = torch.zeros((), device=device, dtype=dtype)
        self.names: list[str] = []
        self._warm = 0
        self._side: torch.cuda.Stream | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: Tensor | None = None

    @property
    def captured(self) -> bool:
        """True once the step replays a CUDA graph."""
        return self._graph is not None

    def run(self, ema_weight: float) -> Tensor:
        """One iteration on the current buffers; the moving average moves by ``ema_weight``
        (``1 - decay``).

        Returns:
            ``[total, *parts]`` losses of the batch (before the update), a 1-D tensor on the
            device (float32, or the model's dtype if wider). With a graph it is the graph's
            output buffer: read it before the next call.
        """
        self.ema_weight.fill_(ema_weight)
        if self._graph is not None:
            self._graph.replay()
            assert self._out is not None
            return self._out
        if not self.graph_wanted:
            self.optimizer.zero_grad(set_to_none=True)
            return self._body()
        if self._warm < WARMUP_STEPS:
            self._warm += 1
            return self._side_stream_step()
        self._capture()
        return self.run(ema_weight)

    def close(self) -> None:
        """Release the captured graph and its memory pool."""
        self._graph = None
        self._out = None

    def _body(self) -> Tensor:
        with self._autocast():
            terms = self.loss(self.ir, self.vis)
        terms.total.backward()
        if self.clip_norm:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_norm, foreach=True)
        self.optimizer.step()
        self.ema.blend(self.fnet, self.ema_weight)
        self.names = list(terms.parts)
        values = torch.stack([terms.total, *terms.parts.values()]).detach()
        return values.to(torch.promote_types(values.dtype, torch.float32))

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _side_stream_step(self) -> Tensor:
        main = torch.cuda.current_stream(self.device)
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        side = self._side
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self.optimizer.zero_grad(set_to_none=True)
            out = self._body()
        main.wait_stream(side)
        return out

    def _capture(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self._body()
        self._graph, self._out = graph, out
