"""The run's metric logs: ``log.csv`` (always), ``validation.csv`` (with validation sets) and
TensorBoard events (when installed), and the curves drawn from the CSVs at the end."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from fnet_deploy.helpers.atomic import write_text_atomic
from fnet_deploy.helpers.errors import InputError, MissingDependencyError
from fnet_deploy.helpers.optional import require
from fnet_deploy.training.layout import RunLayout
from fnet_deploy.training.validation import VAL_METRICS, Validation

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


VALIDATION_COLUMNS = ("stage", "step", "set", "MI", "VIF", "Qabf", "SSIM", "score", "seconds")
"""``validation.csv``: one row per validation set and a ``set = all`` row (the means over the
sets, the score and the validation's wall time) per validation."""


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
        _truncate(self.layout.log, LOG_COLUMNS, stage, done)
        if self.layout.validation.is_file():
            _truncate(self.layout.validation, VALIDATION_COLUMNS, stage, done)

    def best_score(self, stage: int) -> tuple[float, int] | None:
        """The highest validation score of ``stage`` logged so far and its step, or ``None``."""
        if not self.layout.validation.is_file():
            return None
        with self.layout.validation.open(newline="") as handle:
            scores = [
                (float(row["score"]), int(row["step"]))
                for row in csv.DictReader(handle)
                if row["set"] == "all" and int(row["stage"]) == stage and row["score"]
            ]
        return max(scores, key=lambda item: (item[0], -item[1])) if scores else None

    def validation_rows(self, stage: int, step: int, validation: Validation) -> None:
        """Append one validation (a row per set and the ``all`` row) and mirror it to
        TensorBoard (``val/<set>/<metric>``, ``val/score``)."""
        if not self.enabled:
            return
        path = self.layout.validation
        if not path.is_file():
            write_text_atomic(path, _csv_text([], VALIDATION_COLUMNS))
        per_set = validation.per_set
        means = {
            name: sum(v[name] for v in per_set.values()) / len(per_set) for name in VAL_METRICS
        }
        rows = [{"set": name} | values for name, values in per_set.items()]
        rows.append(
            {"set": "all"} | means | {"score": validation.score, "seconds": validation.seconds}
        )
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=VALIDATION_COLUMNS)
            for row in rows:
                values = {"stage": stage, "step": step} | row
                writer.writerow({key: _cell(values.get(key)) for key in VALIDATION_COLUMNS})
        if self.writer is not None:
            for row in rows:
                for name in VAL_METRICS:
                    self.writer.add_scalar(f"val/{row['set']}/{name}", row[name], step)
            self.writer.add_scalar("val/score", validation.score, step)

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
        from fnet_deploy.training.plots import plot_loss_curves

        validation = self.layout.validation
        try:
            plot_loss_curves(
                self.layout.log,
                self.layout.curves,
                validation if validation.is_file() else None,
            )
        except MissingDependencyError as err:
            return f"no loss_curves.png: {err}"
        except InputError:
            return None
        return None


def _format(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _cell(value: object) -> str:
    return value if isinstance(value, str) else _format(value)  # type: ignore[arg-type]


def _truncate(path: Path, columns: tuple[str, ...], stage: int, done: int) -> None:
    """Rewrite the CSV ``path`` without the rows past ``done`` of ``stage`` (and of later
    stages), creating it with its header if needed."""
    rows: list[dict[str, str]] = []
    if path.is_file():
        with path.open(newline="") as handle:
            rows = [
                row
                for row in csv.DictReader(handle)
                if int(row["stage"]) < stage
                or (int(row["stage"]) == stage and int(row["step"]) <= done)
            ]
    write_text_atomic(path, _csv_text(rows, columns))


def _csv_text(rows: list[dict[str, str]], columns: tuple[str, ...] = LOG_COLUMNS) -> str:
    lines = [",".join(columns)]
    lines.extend(",".join(row.get(key, "") or "" for key in columns) for row in rows)
    return "\n".join(lines) + "\n"
