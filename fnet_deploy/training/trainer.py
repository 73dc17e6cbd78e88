"""The two-stage FNet trainer (docs/model.md §5): the loop over stages and iterations.

Stage I trains FNet and IFNet together: ``fused = FNet(ir, vis)``, ``(ir_hat, vis_hat) =
IFNet(fused)``, loss :func:`~fnet_deploy.training.losses.stage_one_loss`. Stage II trains FNet
alone from stage I's weights (the trained weights and their moving average both carry over),
loss :func:`~fnet_deploy.training.losses.stage_two_loss`. Both use Adam and keep an exponential
moving average of the FNet weights; that average is what is saved for inference. What a stage
trains is built in :mod:`~fnet_deploy.training.stage`; the files a run writes are listed in
:mod:`~fnet_deploy.training.layout`.

A resumed run continues bit for bit on the CPU (same model, optimiser, scheduler, RNG and data
stream position); on GPUs it continues the same stream, up to cuDNN's non-determinism.

Each iteration is a :class:`~fnet_deploy.training.step.TrainStep` on fixed input buffers that a
:mod:`~fnet_deploy.training.batches` source fills (with ``data.cache`` the whole decoded set sits
on the training device and crops are cut there); on one GPU the step is captured in a CUDA graph
(``speed.cuda_graph``). ``max_minutes`` time-boxes an invocation: it stops after the last
iteration that fits, saves, and raises :class:`~fnet_deploy.training.stopping.TimeBoxReached`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fnet_deploy.backends.cuda_math import tf32_convolutions
from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.model import FNet
from fnet_deploy.training import distributed
from fnet_deploy.training.batches import BatchSource, CachedCrops, DeviceImages, LoadedCrops
from fnet_deploy.training.config import TrainConfig, to_toml
from fnet_deploy.training.dataset import (
    CropStream,
    PairScan,
    StepBatches,
    check_scan,
    folder_names,
    scan_pairs,
)
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.layout import STAGE_NAMES, RunLayout
from fnet_deploy.training.losses import LossTerms, stage_one_loss, stage_two_loss
from fnet_deploy.training.metric_log import MetricLog
from fnet_deploy.training.provenance import RunFacts
from fnet_deploy.training.reporter import Reporter, SilentReporter
from fnet_deploy.training.resume import check_existing
from fnet_deploy.training.saving import save_checkpoint, save_weights, weights_step
from fnet_deploy.training.stage import StageParts, build_stage
from fnet_deploy.training.step import TrainStep
from fnet_deploy.training.stopping import (
    StopRequest,
    TimeBoxReached,
    TrainingDiverged,
    TrainingStopped,
    diverged_message,
    ignore_interrupts,
)
from fnet_deploy.training.validation import ValSet, holdout_names, load_validation, validate


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
    val_sets: list[ValSet]

    @property
    def facts(self) -> RunFacts:
        """What the stage's files are made from besides the stage."""
        return RunFacts(self.config, self.ctx, self.scan, self.layout)

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
        check_existing(config, layout, resume)
        val_sets = load_validation(
            config.val.folders,
            config.data.ir_dir,
            config.data.vis_dir,
            config.val.pairs,
            config.val.crop,
        )
        held_out = holdout_names(val_sets, config.data.folders)
        scan = scan_pairs(config.data, exclude=held_out)
        for warning in check_scan(scan, config.data):
            show.note(f"warning: {warning}")
        if val_sets:
            show.note(
                f"validating every {config.log.validate_every or 'stage end'} iterations on "
                + ", ".join(f"{v.name} ({len(v.pairs)} pairs)" for v in val_sets)
                + (f"; {len(held_out)} of them left out of training" if held_out else "")
            )
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
            config,
            ctx,
            scan,
            images,
            layout,
            resume,
            show,
            log,
            StopRequest(),
            result,
            deadline,
            val_sets,
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
    result = session.result
    total = config.iterations(stage)
    parts = build_stage(stage, config, ctx, layout, session.resume, show)
    if parts.start >= total:
        show.note(f"{STAGE_NAMES[stage]} already complete ({parts.start} iterations)")
        if weights_step(layout.weights(stage), stage) != parts.start and ctx.is_main:
            save_weights(parts, session.facts, parts.start, parts.loss)
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
        clip_norm=config.optim.clip_norm,
    )
    log.start_stage(stage, parts.start)
    show.stage_started(stage, total, parts.start)
    net.train()
    loss_value, reason = parts.loss, None
    tick, last_logged = time.perf_counter(), parts.start
    val_seconds, stage_start = 0.0, time.monotonic()
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
                raise TrainingDiverged(diverged_message(stage, done, loss_value, layout))
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
            every = config.log.validate_every
            if session.val_sets and ((every and done % every == 0) or done == total):
                val_seconds += _validate(stage, done, parts, session, loss_value)
            if done % config.log.checkpoint_every == 0 or done == total or stopping:
                save_checkpoint(parts, session.facts, done, total, loss_value)
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
    if val_seconds:
        share = 100 * val_seconds / max(time.monotonic() - stage_start, 1e-9)
        show.note(f"validation took {val_seconds:.0f} s, {share:.1f} % of this invocation's stage")
    show.stage_finished(stage)
    if ctx.is_main:
        save_weights(parts, session.facts, total, loss_value)
    distributed.barrier(ctx)
    result.weights[stage] = layout.weights(stage)
    result.models[stage] = parts.ema.averaged(FNet)
    result.steps[stage] = total
    result.final_loss[stage] = loss_value
    return reason


def _validate(stage: int, done: int, parts: StageParts, session: _Session, loss: float) -> float:
    """Score the moving average on the validation sets (rank 0), log it, keep the best stage-II
    weights; returns the seconds it took."""
    if not session.ctx.is_main:
        return 0.0
    best = session.log.best_score(2) if stage == 2 else None
    validation = validate(parts.ema.averaged(FNet), session.val_sets, str(session.ctx.device))
    session.log.validation_rows(stage, done, validation)
    means = "; ".join(
        f"{name} " + " ".join(f"{k} {v:.3f}" for k, v in values.items())
        for name, values in validation.per_set.items()
    )
    note = (
        f"validation at {STAGE_NAMES[stage]} iteration {done}: {means}; "
        f"score {validation.score:.4f}"
    )
    if stage == 2 and (best is None or validation.score > best[0]):
        save_weights(parts, session.facts, done, loss, score=validation.score)
        note += f" (best so far: {session.layout.best.name})"
    session.show.note(note)
    return validation.seconds


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
        worker_init_fn=ignore_interrupts,
    )
    return LoadedCrops(loader, start)


def _loss(stage: int, net: nn.Module, ir: Tensor, vis: Tensor, config: TrainConfig) -> LossTerms:
    if stage == 1:
        ir_hat, vis_hat = net(ir, vis)
        return stage_one_loss(ir, vis, ir_hat, vis_hat)
    return stage_two_loss(ir, vis, net(ir, vis), config.stage2)
