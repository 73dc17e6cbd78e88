"""The two-stage FNet trainer (docs/model.md §5).

Stage I trains FNet and IFNet together: ``fused = FNet(ir, vis)``, ``(ir_hat, vis_hat) =
IFNet(fused)``, loss :func:`~fnet_deploy.training.losses.stage_one_loss`. Stage II trains FNet
alone from stage I's weights (the trained weights and their moving average both carry over),
loss :func:`~fnet_deploy.training.losses.stage_two_loss`. Both use Adam and keep an exponential
moving average of the FNet weights; that average is what is saved for inference.

Files in the output folder (only the rank-0 process writes):

=============================  ==============================================================
``config.toml``                the full config of the latest invocation
``log.csv``                    one row every ``log.log_every`` iterations
``loss_curves.png``            the log drawn (when matplotlib is installed)
``state/stage{n}.safetensors`` training state, every ``log.checkpoint_every`` iterations, at
                               the end of the stage and on Ctrl-C / SIGTERM
``fnet_stage1.safetensors``    FNet (moving average) after stage I
``fnet.safetensors``           FNet (moving average) after stage II: the inference weights
``tensorboard/``               TensorBoard events, when TensorBoard is installed
=============================  ==============================================================

A resumed run continues bit for bit on the CPU (same model, optimiser, scheduler, RNG and data
stream position); on GPUs it continues the same stream, up to cuDNN's non-determinism.

Each iteration is a :class:`~fnet_deploy.training.step.TrainStep` on fixed input buffers that a
:mod:`~fnet_deploy.training.batches` source fills (with ``data.cache`` the whole decoded set sits
on the training device and crops are cut there); on one GPU the step is captured in a CUDA graph
(``speed.cuda_graph``). ``max_minutes`` time-boxes an invocation: it stops after the last
iteration that fits, saves, and raises :class:`TimeBoxReached`.
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from fnet_deploy.atomic import write_text_atomic
from fnet_deploy.cuda_math import tf32_allowed, tf32_convolutions
from fnet_deploy.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.model import FNet, IFNet
from fnet_deploy.model.weights import load_fnet, save_fnet
from fnet_deploy.optional import require
from fnet_deploy.signals import stop_signals_handled
from fnet_deploy.training import distributed
from fnet_deploy.training.batches import BatchSource, CachedCrops, DeviceImages, LoadedCrops
from fnet_deploy.training.checkpoint import (
    TrainState,
    capture_rng,
    load_train_state,
    read_train_info,
    restore_rng,
    save_train_state,
)
from fnet_deploy.training.config import OptimConfig, TrainConfig, to_toml
from fnet_deploy.training.dataset import (
    CropStream,
    PairScan,
    StepBatches,
    check_scan,
    folder_names,
    scan_pairs,
)
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss, stage_two_loss
from fnet_deploy.training.step import TrainStep, graph_blocker, make_adam, set_capturable

LOG_COLUMNS = (
    "stage",
    "step",
    "loss",
    "rec_ir",
    "rec_vis",
    "intensity",
    "gradient",
    "ssim",
    "lr",
    "sec_per_iter",
)
STAGE_NAMES = {1: "stage I", 2: "stage II"}


class TrainingStopped(FnetError):
    """The run was interrupted (Ctrl-C / SIGTERM) and its state saved.

    Attributes:
        signum: the signal that stopped it (SIGINT when not known, e.g. another process's).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


class TimeBoxReached(TrainingStopped):
    """The invocation reached its time box (``max_minutes``) and its state was saved."""


class TrainingDiverged(FnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    def tensorboard(self) -> Path:
        return self.out / "tensorboard"

    def state(self, stage: int) -> Path:
        """Training-state file of ``stage``."""
        return self.out / "state" / f"stage{stage}.safetensors"

    def weights(self, stage: int) -> Path:
        """Inference weights written at the end of ``stage``."""
        return self.out / ("fnet_stage1.safetensors" if stage == 1 else "fnet.safetensors")


class Reporter(Protocol):
    """Receives progress from the trainer (the CLI draws a progress bar from it)."""

    def note(self, text: str) -> None:
        """A message for the user (warnings, what is being resumed)."""

    def stage_started(self, stage: int, total: int, done: int) -> None:
        """``stage`` runs to ``total`` iterations; ``done`` are already complete."""

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        """Iteration ``step`` (1-based) finished; ``losses`` has ``loss`` and its parts."""

    def stage_finished(self, stage: int) -> None:
        """The stage reached its last iteration."""


class SilentReporter:
    """A :class:`Reporter` that shows nothing (non-zero ranks, library use)."""

    def note(self, text: str) -> None:
        pass

    def stage_started(self, stage: int, total: int, done: int) -> None:
        pass

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        pass

    def stage_finished(self, stage: int) -> None:
        pass


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        weights: inference weights file per completed stage of this invocation.
        models: the trained FNet (moving average, the weights saved) per completed stage.
        steps: iterations completed per stage.
        final_loss: last loss per stage (mean over processes).
        layout: where the run's files are.
    """

    weights: dict[int, Path] = field(default_factory=dict)
    models: dict[int, FNet] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    final_loss: dict[int, float] = field(default_factory=dict)
    layout: RunLayout | None = None


class InverseFusion(nn.Module):
    """FNet followed by IFNet, trained together in stage I (one module for DDP)."""

    def __init__(self, fnet: FNet, ifnet: IFNet) -> None:
        super().__init__()
        self.fnet = fnet
        self.ifnet = ifnet

    def forward(self, ir: Tensor, vis: Tensor) -> tuple[Tensor, Tensor]:
        """``(ir_hat, vis_hat)``, each B x 1 x H x W, from ``ir``, ``vis`` (B x 1 x H x W)."""
        return self.ifnet(self.fnet(ir, vis))


class StopRequest:
    """Turns SIGINT / SIGTERM into a request to stop after the current iteration.

    A second Ctrl-C interrupts at once (the last complete checkpoint is still on disk).
    Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signum = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers for the duration of the ``with`` block."""
        with stop_signals_handled(self._handle):
            yield self


def _ignore_interrupts(_worker: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process, which saves and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class MetricLog:
    """``log.csv`` (always) and TensorBoard (when installed), written by rank 0 only."""

    def __init__(self, layout: RunLayout, enabled: bool, tensorboard: bool, plot: bool) -> None:
        self.layout = layout
        self.enabled = enabled
        self.plot = plot
        self.writer: Any = None
        self.tensorboard_missing = False
        if enabled and tensorboard:
            try:
                require("tensorboard")
            except MissingDependencyError:
                self.tensorboard_missing = True
            else:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(layout.tensorboard))

    def start_stage(self, stage: int, done: int) -> None:
        """Drop rows after the point the stage (re)starts from, so a resumed log has no
        duplicates, and create the file with its header if needed."""
        if not self.enabled:
            return
        path = self.layout.log
        rows: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="") as handle:
                rows = [
                    row
                    for row in csv.DictReader(handle)
                    if int(row["stage"]) < stage
                    or (int(row["stage"]) == stage and int(row["step"]) <= done)
                ]
        write_text_atomic(path, _csv_text(rows))

    def row(self, values: dict[str, float | int]) -> None:
        """Append one row (missing columns empty) and mirror it to TensorBoard."""
        if not self.enabled:
            return
        with self.layout.log.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
            writer.writerow({key: _format(values.get(key)) for key in LOG_COLUMNS})
        if self.writer is not None:
            stage, step = int(values["stage"]), int(values["step"])
            for key, value in values.items():
                if key not in ("stage", "step"):
                    self.writer.add_scalar(f"stage{stage}/{key}", value, step)

    def close(self) -> str | None:
        """Flush TensorBoard and draw ``loss_curves.png`` beside the CSV; returns a note when
        the curves cannot be drawn (matplotlib missing)."""
        if self.writer is not None:
            self.writer.close()
        if not (self.enabled and self.plot and self.layout.log.is_file()):
            return None
        from fnet_deploy.plots import plot_loss_curves

        try:
            plot_loss_curves(self.layout.log, self.layout.curves)
        except MissingDependencyError as err:
            return f"no loss_curves.png: {err}"
        except InputError:
            return None
        return None


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _csv_text(rows: list[dict[str, str]]) -> str:
    lines = [",".join(LOG_COLUMNS)]
    lines.extend(",".join(row.get(key, "") or "" for key in LOG_COLUMNS) for row in rows)
    return "\n".join(lines) + "\n"


def make_scheduler(optimizer: Optimizer, optim: OptimConfig, total: int) -> LambdaLR:
    """Learning-rate factor per completed step: linear warm-up, then constant or cosine."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / optim.warmup) if optim.warmup else 1.0
        if optim.schedule == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        return warm

    return LambdaLR(optimizer, factor)


@dataclass
class _Stage:
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
        found = {"fnet": self.fnet.state_dict(), "ema": self.ema.state_dict()}
        if self.ifnet is not None:
            found["ifnet"] = self.ifnet.state_dict()
        return found


@dataclass
class _Session:
    """What the stages of one invocation share."""

    config: TrainConfig
    ctx: DistContext
    scan: PairScan
    images: DeviceImages | None
    layout: RunLayout
    resume: bool
    show: Reporter
    log: MetricLog
    stop: StopRequest
    result: TrainResult
    deadline: float | None

    def out_of_time(self, next_step: float) -> bool:
        """Whether an iteration of ``next_step`` seconds, started now, would end past the time
        box."""
        return self.deadline is not None and time.monotonic() + next_step >= self.deadline

    def stopped(self, reason: str, what: str) -> TrainingStopped:
        """The exception that ends the invocation (``reason``: ``"time"`` or ``"signal"``)."""
        again = f"continue with --resume --out {self.layout.out}"
        if reason == "time":
            minutes = self.config.max_minutes
            return TimeBoxReached(f"time box of {minutes:g} min reached: {what}; {again}")
        return TrainingStopped(f"interrupted: {what}; {again}", self.stop.signum)


def train(
    config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None
) -> TrainResult:
    """Run the stages of ``config`` (``config.stages``), resuming from ``config.out`` if asked.

    Args:
        config: the run's configuration (``config.threads`` sets torch's thread count for the
            whole process).
        resume: continue the states found in ``config.out``; without it an existing state
            for a stage to be trained is an error (a run is never overwritten).
        reporter: progress receiver (rank 0 only); silent when ``None``.

    Raises:
        TrainingStopped: Ctrl-C / SIGTERM; the state was saved first.
        TimeBoxReached: ``config.max_minutes`` ran out; the state was saved first.
        TrainingDiverged: the loss became NaN or infinite.
        FnetError: bad data, bad config, or a state that does not fit.
    """
    deadline = time.monotonic() + 60.0 * config.max_minutes if config.max_minutes else None
    if config.threads:
        torch.set_num_threads(config.threads)
    ctx = distributed.setup(config.device)
    try:
        show: Reporter = reporter if (reporter is not None and ctx.is_main) else SilentReporter()
        layout = RunLayout(Path(config.out))
        _check_existing(config, layout, resume)
        scan = scan_pairs(config.data)
        for warning in check_scan(scan, config.data):
            show.note(f"warning: {warning}")
        show.note(
            f"{len(scan.pairs)} training pairs from {', '.join(folder_names(config.data.folders))}"
            f"; {ctx.world_size} process(es) on {ctx.device.type}, global batch "
            f"{config.data.batch_size * ctx.world_size}"
        )
        images = None
        if config.data.cache:
            images = DeviceImages(scan.images, ctx.device)
            scan.images.clear()  # the device copy replaces the decoded arrays
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        log = MetricLog(layout, ctx.is_main, config.log.tensorboard, config.log.plot)
        if log.tensorboard_missing:
            show.note(
                "TensorBoard is not installed: logging to log.csv only "
                "(pip install 'fnet-deploy[train]')"
            )
        if ctx.is_main:
            write_text_atomic(layout.config, to_toml(config))
        result = TrainResult(layout=layout)
        session = _Session(
            config, ctx, scan, images, layout, resume, show, log, StopRequest(), result, deadline
        )
        cuda = ctx.device.type == "cuda"
        math_mode = tf32_convolutions(config.speed.tf32) if cuda else contextlib.nullcontext()
        try:
            with session.stop.installed(), math_mode:
                stages = config.stage_list()
                for stage in stages:
                    reason = _run_stage(stage, session)
                    if reason is None and session.out_of_time(0.0):
                        reason = "time"
                    if reason is not None and stage != stages[-1]:
                        raise session.stopped(
                            reason,
                            f"{STAGE_NAMES[stage]} finished and saved, the next stage did not "
                            "start",
                        )
        finally:
            note = log.close()
            if note:
                show.note(note)
        return result
    finally:
        distributed.teardown(ctx)


def _check_existing(config: TrainConfig, layout: RunLayout, resume: bool) -> None:
    """Refuse to overwrite a run, to resume one with another model, or to train stage I under an
    existing stage II; runs before anything in ``layout`` is written."""
    if not resume:
        for stage in config.stage_list():
            path = layout.state(stage)
            if path.exists():
                step = read_train_info(path)["step"]
                raise FnetError(
                    f"{layout.out} already holds a {STAGE_NAMES[stage]} run (iteration {step}): "
                    "pass --resume to continue it, or choose another --out"
                )
    else:
        for stage in config.stage_list():
            path = layout.state(stage)
            saved_model = (
                read_train_info(path).get("info", {}).get("config", {}).get("model")
                if path.exists()
                else None
            )
            if saved_model is not None and saved_model != config.model.to_dict():
                raise FnetError(
                    f"cannot resume {STAGE_NAMES[stage]}: the saved run used model "
                    f"{saved_model}, this config asks for {config.model.to_dict()}"
                )
    first, second = layout.state(1), layout.state(2)
    if 1 in config.stage_list() and second.exists():
        done = read_train_info(first)["step"] if first.exists() else 0
        if done < config.stage1.iterations:
            raise FnetError(
                f"{layout.out} holds a stage II run that started from stage I at iteration "
                f"{done}; training stage I on to {config.stage1.iterations} would leave it "
                "stale: choose another --out (stage2.init starts stage II from any weights)"
            )


def _run_stage(stage: int, session: _Session) -> str | None:
    """Train ``stage`` to its last iteration.

    Returns:
        Why the stage stopped at its last iteration rather than going on: ``"signal"`` or
        ``"time"`` (the stop came at that iteration), else None.

    Raises:
        TrainingStopped: stopped (signal or time box) before the last iteration, state saved.
    """
    config, ctx, layout, show, log = (
        session.config,
        session.ctx,
        session.layout,
        session.show,
        session.log,
    )
    scan, result = session.scan, session.result
    total = config.iterations(stage)
    parts = _build_stage(stage, config, ctx, layout, session.resume, show)
    if parts.start >= total:
        show.note(f"{STAGE_NAMES[stage]} already complete ({parts.start} iterations)")
        if _weights_step(layout.weights(stage), stage) != parts.start and ctx.is_main:
            _save_weights(stage, parts, config, ctx, scan, layout, parts.start, parts.loss)
        result.weights[stage] = layout.weights(stage)
        result.models[stage] = parts.ema.averaged(FNet)
        result.steps[stage] = parts.start
        return None
    net = distributed.wrap(parts.trainable, ctx)
    source = _batch_source(stage, parts.start, total, session)
    batch, crop = config.data.batch_size, config.data.crop
    runner = TrainStep(
        lambda ir, vis: _loss(stage, net, ir, vis, config),
        parts.optimizer,
        parts.ema,
        parts.fnet,
        (batch, 1, crop, crop),
        ctx.device,
        graph=parts.graph,
        channels_last=config.speed.channels_last,
        precision=config.speed.precision,
    )
    log.start_stage(stage, parts.start)
    show.stage_started(stage, total, parts.start)
    net.train()
    loss_value, reason = parts.loss, None
    tick, last_logged = time.perf_counter(), parts.start
    step_seconds, step_start = 0.0, time.monotonic()
    try:
        for step in range(parts.start, total):
            done = step + 1
            source.fill(step, runner.ir, runner.vis)
            lr = float(parts.optimizer.param_groups[0]["lr"])
            values = runner.run(1.0 - parts.ema.decay_at(done))
            if done < total:
                source.prepare(done)
            late = session.out_of_time(step_seconds)
            means, stopping = distributed.agree(
                list(values.unbind()), session.stop.requested or late, ctx
            )
            loss_value = means[0]
            if not math.isfinite(loss_value):
                raise TrainingDiverged(_diverged_message(stage, done, loss_value, layout))
            parts.scheduler.step()
            losses = {"loss": loss_value} | dict(zip(runner.names, means[1:], strict=True))
            show.step_done(stage, done, losses)
            if done % config.log.log_every == 0 or done == total:
                now = time.perf_counter()
                log.row(
                    {"stage": stage, "step": done, "lr": lr}
                    | losses
                    | {"sec_per_iter": (now - tick) / (done - last_logged)}
                )
                tick, last_logged = now, done
            step_seconds, step_start = time.monotonic() - step_start, time.monotonic()
            # One process stops right after the step the signal arrived in (or the last step
            # that fits the time box); several processes stop together at the step where the
            # request was agreed on (see distributed.agree).
            stopping = stopping or (session.stop.requested and not ctx.distributed)
            if done % config.log.checkpoint_every == 0 or done == total or stopping:
                _checkpoint(stage, parts, config, ctx, scan, layout, done, total, loss_value)
            if stopping:
                reason = "time" if late and not session.stop.requested else "signal"
                if done < total:
                    raise session.stopped(
                        reason,
                        f"{STAGE_NAMES[stage]} saved at iteration {done} of {total} in "
                        f"{layout.state(stage)}",
                    )
    finally:
        runner.close()
    show.stage_finished(stage)
    if ctx.is_main:
        _save_weights(stage, parts, config, ctx, scan, layout, total, loss_value)
    distributed.barrier(ctx)
    result.weights[stage] = layout.weights(stage)
    result.models[stage] = parts.ema.averaged(FNet)
    result.steps[stage] = total
    result.final_loss[stage] = loss_value
    return reason


def _batch_source(stage: int, start: int, total: int, session: _Session) -> BatchSource:
    """The stage's batches from ``start``: cut on the device from the cached set, or read from
    disk by a DataLoader (``data.cache = false``)."""
    config, ctx = session.config, session.ctx
    stream = CropStream(session.scan, config.data.crop, config.seed, stage)
    steps = StepBatches(start, total, config.data.batch_size, ctx.rank, ctx.world_size)
    if session.images is not None:
        return CachedCrops(session.images, stream, steps)
    loader = DataLoader(
        stream,
        batch_sampler=steps,
        num_workers=config.data.workers,
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=_ignore_interrupts,
    )
    return LoadedCrops(loader, start)


def _loss(stage: int, net: nn.Module, ir: Tensor, vis: Tensor, config: TrainConfig) -> LossTerms:
    if stage == 1:
        ir_hat, vis_hat = net(ir, vis)
        return stage_one_loss(ir, vis, ir_hat, vis_hat)
    return stage_two_loss(ir, vis, net(ir, vis), config.stage2)


def _diverged_message(stage: int, step: int, value: float, layout: RunLayout) -> str:
    path = layout.state(stage)
    if path.exists():
        kept = f"the last good checkpoint is {path} (iteration {read_train_info(path)['step']})"
    else:
        kept = "no checkpoint had been written yet in this stage"
    return (
        f"{STAGE_NAMES[stage]} loss became {value} at iteration {step}; training stopped and "
        f"{kept}. Lower --lr (or check the data) and continue with --resume"
    )


def _build_stage(
    stage: int,
    config: TrainConfig,
    ctx: DistContext,
    layout: RunLayout,
    resume: bool,
    show: Reporter,
) -> _Stage:
    torch.manual_seed(config.seed)
    dtype = torch.float64 if config.speed.precision == "fp64" else torch.float32
    fnet = FNet(config.model).to(ctx.device, dtype)
    ifnet = IFNet(config.model).to(ctx.device, dtype) if stage == 1 else None
    trainable: nn.Module = InverseFusion(fnet, ifnet) if ifnet is not None else fnet
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
        _check_resumable(saved, stage, config, ctx, show)
    ema_init: dict[str, Tensor] | None = None
    if stage == 2 and saved is None:
        start_weights, ema_init, init_info = _stage_two_init(config, ctx, layout)
        fnet.load_state_dict(start_weights)
    ema = ModelEMA(fnet, config.optim.ema_decay, config.optim.ema_warmup)
    if ema_init is not None:
        ema.load_state_dict(ema_init)
    optimizer = make_adam(trainable.parameters(), config.optim, capturable=graph)
    scheduler = make_scheduler(optimizer, config.optim, config.iterations(stage))
    parts = _Stage(
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


def _check_resumable(
    saved: TrainState, stage: int, config: TrainConfig, ctx: DistContext, show: Reporter
) -> None:
    if saved.stage != stage:
        raise FnetError(f"training state holds stage {saved.stage}, expected stage {stage}")
    saved_world = saved.info.get("world_size", 1)
    if saved_world != ctx.world_size:
        show.note(
            f"warning: the run was saved with {saved_world} process(es) and resumes with "
            f"{ctx.world_size}: training continues, but not bit for bit"
        )


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


def _stage_info(
    stage: int,
    parts: _Stage,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    total: int,
    loss: float,
) -> dict[str, Any]:
    return {
        "stage": stage,
        "total": total,
        "config": config.to_dict(),
        "world_size": ctx.world_size,
        "global_batch": config.data.batch_size * ctx.world_size,
        "pairs": len(scan.pairs),
        "data": folder_names(config.data.folders),
        "loss": loss if math.isfinite(loss) else None,
        "luminance": "ycbcr",
        "init": parts.init_info,
        "execution": _execution(parts, config, ctx),
    }


def _execution(parts: _Stage, config: TrainConfig, ctx: DistContext) -> dict[str, Any]:
    """How the step ran (device, torch, CUDA graph, layout, TF32, precision): none of it is part
    of the recipe, all of it can move float32 results by rounding."""
    cuda = ctx.device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(ctx.device) if cuda else ctx.device.type,
        "torch": torch.__version__,
        "cuda_graph": parts.graph,
        "channels_last": config.speed.channels_last,
        "tf32_convolutions": cuda and tf32_allowed(),
        "precision": config.speed.precision,
        "data_on_device": config.data.cache,
    }


def _checkpoint(
    stage: int,
    parts: _Stage,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    layout: RunLayout,
    done: int,
    total: int,
    loss: float,
) -> None:
    if ctx.is_main:
        info = _stage_info(stage, parts, config, ctx, scan, total, loss)
        info["samples_seen"] = done * config.data.batch_size * ctx.world_size
        state = TrainState(
            stage=stage,
            step=done,
            modules=parts.modules(),
            optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict(),
            rng=capture_rng(),
            info=info,
        )
        save_train_state(layout.state(stage), state)
    distributed.barrier(ctx)


def _weights_step(path: Path, stage: int) -> int | None:
    """The iteration count a stage's weights file records (None: missing, unreadable, foreign).

    A stage that is already complete rewrites its weights unless they record exactly its
    iterations, so that a run stopped early and finished with ``--set stageN.iterations=STEP``
    writes the weights of that step, never leaves an older file in place.
    """
    if not path.is_file():
        return None
    try:
        _, info = load_fnet(path)
    except FnetError:
        return None
    total = info.metadata.get("training", {}).get(f"stage{stage}", {}).get("total")
    return total if isinstance(total, int) else None


def _save_weights(
    stage: int,
    parts: _Stage,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    layout: RunLayout,
    done: int,
    loss: float,
) -> None:
    info = _stage_info(stage, parts, config, ctx, scan, done, loss)
    training: dict[str, Any] = {f"stage{stage}": info}
    if stage == 2 and "stage1" in parts.init_info:
        training["stage1"] = parts.init_info["stage1"]
    stages = "stage I" if stage == 1 else "stages I+II" if "stage1" in training else "stage II"
    provenance = (
        f"fnet-deploy train: {stages}, {done} iterations in stage {stage}, data "
        f"{', '.join(folder_names(config.data.folders))} ({len(scan.pairs)} pairs), "
        "moving-average weights"
    )
    if stage == 2 and parts.init_info.get("sha256"):
        provenance += f", initialised from {Path(parts.init_info['from']).name}"
    save_fnet(
        layout.weights(stage),
        parts.ema.averaged(FNet),
        luminance="ycbcr",
        provenance=provenance,
        extra={"training": training},
    )
