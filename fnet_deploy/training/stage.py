"""What one stage trains, built fresh or restored from its saved state.

Stage I trains FNet and IFNet together (:class:`InverseFusion`); stage II trains FNet alone from
stage I's weights and moving average (or ``stage2.init``). Each has Adam, a learning-rate
schedule and a moving average of the FNet weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model import FNet, IFNet
from fnet_deploy.model.tap_conv import set_conv_form
from fnet_deploy.model.weights import load_fnet
from fnet_deploy.training.checkpoint import TrainState, load_train_state, restore_rng
from fnet_deploy.training.config import OptimConfig, TrainConfig
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.layout import STAGE_NAMES, RunLayout
from fnet_deploy.training.reporter import Reporter
from fnet_deploy.training.resume import check_resumable
from fnet_deploy.training.step import graph_blocker, make_adam, set_capturable


class InverseFusion(nn.Module):
    """FNet followed by IFNet, trained together in stage I (one module for DDP)."""

    def __init__(self, fnet: FNet, ifnet: IFNet) -> None:
        super().__init__()
        self.fnet = fnet
        self.ifnet = ifnet

    def forward(self, ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor]:
        """``(ir_hat, vis_hat)``, each B x 1 x H x W, from ``ir``, ``vis`` (B x 1 x H x W)."""
        return self.ifnet(self.fnet(ir, vis))


def make_scheduler(optimizer: Optimizer, optim: OptimConfig, total: int) -> LambdaLR:
    """Learning-rate factor per completed step: linear warm-up, then constant or cosine."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / optim.warmup) if optim.warmup else 1.0
        if optim.schedule == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        return warm

    return LambdaLR(optimizer, factor)


@dataclass
class StageParts:
    """The objects one stage trains."""

    stage: int
    fnet: FNet
    trainable: nn.Module
    ema: ModelEMA
    optimizer: Adam
    scheduler: LambdaLR
    ifnet: IFNet | None = None
    graph: bool = False
    start: int = 0
    loss: float = math.nan
    init_info: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, dict[str, Tensor]]:
        """The state_dicts a checkpoint keeps: ``fnet``, ``ema`` and (stage I) ``ifnet``."""
        found = {"fnet": self.fnet.state_dict(), "ema": self.ema.state_dict()}
        if self.ifnet is not None:
            found["ifnet"] = self.ifnet.state_dict()
        return found


def build_stage(
    stage: int,
    config: TrainConfig,
    ctx: DistContext,
    layout: RunLayout,
    resume: bool,
    show: Reporter,
) -> StageParts:
    """The models, moving average, optimiser and schedule of ``stage`` on ``ctx.device``: from
    the saved state when resuming one, else freshly seeded (stage II from its starting weights).
    """
    torch.manual_seed(config.seed)
    dtype = torch.float64 if config.speed.precision == "fp64" else torch.float32
    fnet = FNet(config.model).to(ctx.device, dtype)
    ifnet = IFNet(config.model).to(ctx.device, dtype) if stage == 1 else None
    trainable: nn.Module = InverseFusion(fnet, ifnet) if ifnet is not None else fnet
    conv_form = config.speed.conv_form(ctx.device.type)
    set_conv_form(trainable, conv_form)
    if config.speed.channels_last:
        # Module.to accepts memory_format at run time; torch's type stubs omit it.
        trainable.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    blocker = graph_blocker(ctx.device, ctx.world_size, config.optim)
    graph = config.speed.cuda_graph and blocker is None
    if config.speed.cuda_graph and ctx.device.type == "cuda" and blocker is not None:
        show.note(f"{blocker}: {STAGE_NAMES[stage]} runs its steps eagerly")
    init_info: dict[str, Any] = {}
    saved: TrainState | None = None
    state_path = layout.state(stage)
    if resume and state_path.exists():
        saved = load_train_state(state_path, ctx.device)
        check_resumable(saved, stage, ctx, conv_form, show)
    ema_init: dict[str, Tensor] | None = None
    if stage == 2 and saved is None:
        start_weights, ema_init, init_info = _stage_two_init(config, ctx, layout)
        fnet.load_state_dict(start_weights)
    ema = ModelEMA(fnet, config.optim.ema_decay, config.optim.ema_warmup)
    if ema_init is not None:
        ema.load_state_dict(ema_init)
    optimizer = make_adam(trainable.parameters(), config.optim, capturable=graph)
    scheduler = make_scheduler(optimizer, config.optim, config.iterations(stage))
    parts = StageParts(
        stage, fnet, trainable, ema, optimizer, scheduler, ifnet, graph, init_info=init_info
    )
    if saved is not None:
        fnet.load_state_dict(saved.modules["fnet"])
        if ifnet is not None:
            ifnet.load_state_dict(saved.modules["ifnet"])
        ema.load_state_dict(saved.modules["ema"])
        optimizer.load_state_dict(saved.optimizer)
        set_capturable(optimizer, graph)
        if config.speed.channels_last:
            _match_layouts(optimizer)
        scheduler.load_state_dict(saved.scheduler)
        restore_rng(saved.rng)
        parts.start = saved.step
        parts.loss = math.nan if saved.info.get("loss") is None else float(saved.info["loss"])
        parts.init_info = saved.info.get("init", {})
        show.note(f"resuming {STAGE_NAMES[stage]} at iteration {saved.step} from {state_path}")
    return parts


def _match_layouts(optimizer: Adam) -> None:
    """Give restored moment tensors their parameter's memory layout (NHWC under channels_last),
    so that Adam's fused per-list kernels see one layout."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == param.shape and value.dim() == 4:
                state[key] = torch.empty_like(param).copy_(value)


def _stage_two_init(
    config: TrainConfig, ctx: DistContext, layout: RunLayout
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """Stage II's starting weights and moving average, and where they came from."""
    if config.stage2.init:
        model, info = load_fnet(config.stage2.init, ctx.device)
        if model.config != config.model:
            raise FnetError(
                f"stage2.init {info.path} holds model {model.config.to_dict()}, the config "
                f"asks for {config.model.to_dict()}"
            )
        weights = model.state_dict()
        return weights, weights, {"from": str(info.path), "sha256": info.sha256}
    path = layout.state(1)
    if not path.exists():
        raise FnetError(
            f"stage II starts from stage I's weights, but {layout.out} has no stage I run: "
            "train --stage 1 (or both) first, or give --set stage2.init=WEIGHTS"
        )
    state = load_train_state(path, ctx.device)
    total = state.info.get("total", 0)
    if state.step < total:
        raise FnetError(
            f"stage I in {layout.out} stopped at iteration {state.step} of {total}: finish it "
            "with --stage 1 --resume, or give --set stage2.init=WEIGHTS"
        )
    if state.info.get("config", {}).get("model") != config.model.to_dict():
        raise FnetError(f"stage I in {layout.out} trained a different model config")
    return (
        state.modules["fnet"],
        state.modules["ema"],
        {"from": str(path), "stage1": state.info},
    )
