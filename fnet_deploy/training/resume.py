"""Whether a run may start in its output folder: never over an existing run, a resume only with
the model it was saved with, and never stage I under a stage II that started from it."""

from __future__ import annotations

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.training.checkpoint import TrainState, read_train_info
from fnet_deploy.training.config import TrainConfig
from fnet_deploy.training.distributed import DistContext
from fnet_deploy.training.layout import STAGE_NAMES, RunLayout
from fnet_deploy.training.reporter import Reporter


def check_existing(config: TrainConfig, layout: RunLayout, resume: bool) -> None:
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


def check_resumable(
    saved: TrainState, stage: int, ctx: DistContext, conv_form: str, show: Reporter
) -> None:
    """Refuse a saved state of another stage; warn when the process count or the way the step
    is computed changed (the run continues, not bit for bit)."""
    if saved.stage != stage:
        raise FnetError(f"training state holds stage {saved.stage}, expected stage {stage}")
    saved_world = saved.info.get("world_size", 1)
    if saved_world != ctx.world_size:
        show.note(
            f"warning: the run was saved with {saved_world} process(es) and resumes with "
            f"{ctx.world_size}: training continues, but not bit for bit"
        )
    saved_form = saved.info.get("execution", {}).get("conv", "native")
    if saved_form != conv_form:
        show.note(
            f"warning: the run was saved with speed.conv={saved_form} and resumes with "
            f"{conv_form}: training continues, but not bit for bit"
        )
