"""The run's metric log: ``log.csv`` (always) and TensorBoard events (when installed), and the
loss curves drawn from the CSV at the end."""

from __future__ import annotations

import csv
from typing import Any

from fnet_deploy.atomic import write_text_atomic
from fnet_deploy.errors import InputError, MissingDependencyError
from fnet_deploy.optional import require
from fnet_deploy.training.layout import RunLayout

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
