"""What a stage writes: its training state (every ``log.checkpoint_every`` iterations, at its end
and when stopped) and its inference weights (the moving average), each with its provenance."""

from __future__ import annotations

from pathlib import Path

from fnet_deploy.errors import FnetError
from fnet_deploy.model import FNet
from fnet_deploy.model.weights import load_fnet, save_fnet
from fnet_deploy.training import distributed
from fnet_deploy.training.checkpoint import TrainState, capture_rng, save_train_state
from fnet_deploy.training.config import TrainConfig
from fnet_deploy.training.dataset import PairScan
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.layout import RunLayout
from fnet_deploy.training.provenance import stage_info, weights_provenance
from fnet_deploy.training.stage import StageParts


def save_checkpoint(
    stage: int,
    parts: StageParts,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    layout: RunLayout,
    done: int,
    total: int,
    loss: float,
) -> None:
    """Write the state of ``stage`` after iteration ``done`` (rank 0), then wait for every
    process."""
    if ctx.is_main:
        info = stage_info(stage, parts, config, ctx, scan, total, loss)
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


def weights_step(path: Path, stage: int) -> int | None:
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


def save_weights(
    stage: int,
    parts: StageParts,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    layout: RunLayout,
    done: int,
    loss: float,
) -> None:
    """Write the moving-average FNet of ``stage`` after ``done`` iterations as inference
    weights (called by rank 0 only)."""
    provenance, training = weights_provenance(stage, parts, config, ctx, scan, done, loss)
    save_fnet(
        layout.weights(stage),
        parts.ema.averaged(FNet),
        luminance="ycbcr",
        provenance=provenance,
        extra={"training": training},
    )


def save_best(
    parts: StageParts,
    config: TrainConfig,
    ctx: DistContext,
    scan: PairScan,
    layout: RunLayout,
    done: int,
    loss: float,
    score: float,
) -> None:
    """Write the stage-II moving average after ``done`` iterations as ``fnet_best.safetensors``,
    recording its validation score (called by rank 0 only)."""
    provenance, training = weights_provenance(2, parts, config, ctx, scan, done, loss)
    save_fnet(
        layout.best,
        parts.ema.averaged(FNet),
        luminance="ycbcr",
        provenance=f"{provenance}; best validation score {score:.4f} (iteration {done})",
        extra={"training": training, "validation": {"step": done, "score": score}},
    )
