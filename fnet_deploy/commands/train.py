"""``fnet-deploy train``: the two-stage FNet training (single process or under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from fnet_deploy.commands.common import (
    PlainProgress,
    check_output,
    console,
    progress_bar,
    reports_errors,
)
from fnet_deploy.commands.train_options import (
    ConfigOption,
    CropOption,
    DataOption,
    IterationsOption,
    LrOption,
    MaxTimeMinOption,
    ResumeOption,
    RunFolderOption,
    SeedOption,
    SetOption,
    StageOption,
    TrainBatchOption,
    TrainDeviceOption,
    ValDataOption,
)
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.helpers.memory import require_memory
from fnet_deploy.helpers.signals import signal_exit_code
from fnet_deploy.model.cost import training_bytes
from fnet_deploy.training.config import (
    TrainConfig,
    apply_overrides,
    differences,
    read_config,
    set_fields,
)
from fnet_deploy.training.layout import STAGE_NAMES, RunLayout

TIME_BOX_EXIT = 75
"""Exit status of a run stopped by its time box (``--max-time-min``), state saved: sysexits'
EX_TEMPFAIL, "try again later" (with ``--resume``)."""


class _SpeedColumn(ProgressColumn):
    """Iterations per second (rich's running estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("-- it/s", style="progress.data.speed")
        if speed < 1:
            return Text(f"{1 / speed:.2f} s/it", style="progress.data.speed")
        return Text(f"{speed:.2f} it/s", style="progress.data.speed")


class _ProgressReporter:
    """Shows the trainer's progress as one rich bar per stage.

    The bars appear when the first stage starts, so that a run refused while checking its data
    prints its error alone; :meth:`close` ends the display. Without a terminal, plain lines
    (:class:`~fnet_deploy.commands.common.PlainProgress`), from the data preparation on.
    """

    def __init__(self, progress: Progress | PlainProgress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.started = False
        if isinstance(progress, PlainProgress):
            progress.add_task("reading the data and preparing the model", total=None)

    def close(self) -> None:
        self.progress.stop()  # also the plain lines begun before the first stage
        self.started = False

    def note(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def stage_started(self, stage: int, total: int, done: int) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        self.task = self.progress.add_task(STAGE_NAMES[stage], total=total, completed=done, loss="")

    def step_done(self, stage: int, step: int, losses: dict[str, float]) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=step, loss=f"loss {losses['loss']:.4g}")

    def stage_finished(self, stage: int) -> None:
        self.task = None


def build_config(
    config_file: Path | None,
    resume: bool,
    flags: dict[str, object],
    overrides: list[str],
) -> tuple[TrainConfig, list[str]]:
    """The run's config: base (the saved run when resuming, else ``config_file`` or defaults),
    then the option ``flags`` (dotted field -> value, ``None`` = not given), then ``overrides``.

    Returns:
        The config and, when resuming, the fields that differ from the saved run.
    """
    out = flags.get("out")
    saved: TrainConfig | None = None
    if resume:
        if config_file is not None:
            raise FnetError(
                "--resume continues the config saved with the run; change fields with --set "
                "or the options instead of --config"
            )
        layout = RunLayout(Path(str(out)) if out is not None else Path(TrainConfig().out))
        if not layout.config.is_file():
            raise InputError(layout.config, "no saved run to resume here (check --out)")
        base = read_config(layout.config)
        saved = TrainConfig.from_dict(base)
    else:
        base = read_config(config_file) if config_file is not None else {}
    given = {key: value for key, value in flags.items() if value is not None}
    config = TrainConfig.from_dict(apply_overrides(set_fields(base, given), overrides))
    return config, differences(saved, config) if saved is not None else []


@reports_errors
def train(
    config: ConfigOption = None,
    stage: StageOption = None,
    data: DataOption = None,
    val_data: ValDataOption = None,
    out: RunFolderOption = None,
    iterations: IterationsOption = None,
    batch_size: TrainBatchOption = None,
    crop: CropOption = None,
    lr: LrOption = None,
    device: TrainDeviceOption = None,
    seed: SeedOption = None,
    max_time_min: MaxTimeMinOption = None,
    resume: ResumeOption = False,
    set_: SetOption = None,
) -> None:
    """Train FNet in two stages (inverse-fusion pre-training, then fusion loss).

    Settings come from the defaults (the paper's recipe), then --config, then the options,
    then --set. Multi-GPU: torchrun --nproc_per_node N -m fnet_deploy.training [OPTIONS]
    """
    # The trainer (and with it PyTorch) is imported here, not with the CLI's --help.
    from fnet_deploy.training.distributed import launched_rank
    from fnet_deploy.training.stopping import TimeBoxReached, TrainingStopped
    from fnet_deploy.training.trainer import train as run_training

    flags: dict[str, object] = {
        "stages": stage,
        "data.folders": [str(folder) for folder in data] if data else None,
        "val.folders": [str(folder) for folder in val_data] if val_data else None,
        "out": str(out) if out is not None else None,
        "stage1.iterations": iterations,
        "stage2.iterations": iterations,
        "data.batch_size": batch_size,
        "data.crop": crop,
        "optim.lr": lr,
        "device": device,
        "seed": seed,
        "max_minutes": max_time_min,
    }
    run_config, changed = build_config(config, resume, flags, set_ or [])
    inputs = tuple(Path(folder) for folder in run_config.data.folders)
    val_inputs = tuple(Path(folder) for folder in run_config.val.folders)
    check_output(Path(run_config.out), "--out", folder=True, inputs=inputs + val_inputs)
    for folder in inputs:  # before the memory estimate: a missing folder is the first problem
        if not folder.is_dir():
            raise InputError(folder, "not a folder" if folder.exists() else "data folder not found")
    for folder in val_inputs:
        if not folder.is_dir():
            raise InputError(
                folder, "not a folder" if folder.exists() else "validation folder not found"
            )
    subfolders = (run_config.data.ir_dir, run_config.data.vis_dir)
    for folder in inputs + val_inputs:
        missing = [name for name in subfolders if not (folder / name).is_dir()]
        if missing:
            raise InputError(
                folder,
                f"has no {' and no '.join(f'{name}/' for name in missing)} sub-folder (a "
                f"data folder holds {subfolders[0]}/ and {subfolders[1]}/, images paired by name)",
            )
    if (run_config.device or "cpu") == "cpu":
        crop, batch = run_config.data.crop, run_config.data.batch_size
        require_memory(
            training_bytes(run_config.model, crop, batch),
            f"training on {batch} crops of {crop}x{crop}",
            "give a smaller --crop or --batch",
        )
    main_process = launched_rank() == 0
    if changed and main_process:
        console.print(f"resuming with changes: {'; '.join(changed)}", markup=False)
    try:
        if not main_process:
            run_training(run_config, resume=resume)
            return
        reporter = _ProgressReporter(
            progress_bar(TextColumn("{task.fields[loss]}"), _SpeedColumn())
        )
        try:
            result = run_training(run_config, resume=resume, reporter=reporter)
        finally:
            reporter.close()
    except TrainingStopped as stopped:
        if main_process:
            typer.echo(str(stopped), err=True)
        timed = isinstance(stopped, TimeBoxReached)
        raise typer.Exit(TIME_BOX_EXIT if timed else signal_exit_code(stopped.signum)) from None
    for number, path in result.weights.items():
        console.print(f"{STAGE_NAMES[number]} weights: {path}", markup=False)
    console.print(f"log: {RunLayout(Path(run_config.out)).log}", markup=False)
