"""What a stage writes: its training state (every ``log.checkpoint_every`` iterations, at its end
and when stopped) and its inference weights (the moving average), each with its provenance."""

from __future__ import annotations

from pathlib import Path

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model import FNet
from fnet_deploy.model.weights import load_fnet, save_fnet
from fnet_deploy.training import distributed
from fnet_deploy.training.checkpoint import TrainState, capture_rng, save_train_state
from fnet_deploy.training.provenance import RunFacts, stage_info, weights_provenance
from fnet_deploy.training.stage import StageParts


def save_checkpoint(parts: StageParts, run: RunFacts, done: int, total: int, loss: float) -> None:
    """Write the state of stage ``parts.stage`` after iteration ``done`` (rank 0), then wait for
    every process."""
    if run.ctx.is_main:
        info = stage_info(parts, run, total, loss)
        info["samples_seen"] = done * run.config.data.batch_size * run.ctx.world_size
        state = TrainState(
            stage=parts.stage,
            step=done,
            modules=parts.modules(),
            optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict(),
            rng=capture_rng(),
            info=info,
        )
        save_train_state(run.layout.state(parts.stage), state)
    distributed.barrier(run.ctx)


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
    parts: StageParts, run: RunFacts, done: int, loss: float, score: float | None = None
) -> None:
    """Write the moving-average FNet of stage ``parts.stage`` after ``done`` iterations as
    inference weights (called by rank 0 only): the stage's weights file, or with a validation
    ``score`` the best-so-far file ``fnet_best.safetensors``, recording that score."""
    provenance, training = weights_provenance(parts, run, done, loss)
    extra: dict[str, object] = {"training": training}
    path = run.layout.weights(parts.stage)
    if score is not None:
        path = run.layout.best
        provenance += f"; best validation score {score:.4f} (iteration {done})"
        extra["validation"] = {"step": done, "score": score}
    save_fnet(
        path,
        parts.ema.averaged(FNet),
        luminance="ycbcr",
        provenance=provenance,
        extra=extra,
    )
