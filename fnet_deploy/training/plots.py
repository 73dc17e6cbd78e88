"""Training losses (and validation scores) against the step: ``loss_curves.png`` of a run."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fnet_deploy.helpers.errors import InputError
from fnet_deploy.helpers.figures import new_figure, palette, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class LossLog:
    """A training log: steps, an optional stage label per row, and numeric columns.

    Attributes:
        steps: (R,) float64 step of each row.
        stages: the stage label of each row, or ``None`` when the log has no ``stage`` column.
        columns: column name -> (R,) float64 values (NaN where a row left it empty).
    """

    steps: np.ndarray
    stages: list[str] | None
    columns: dict[str, np.ndarray]


def read_loss_log(path: str | Path, rows_where: tuple[str, str] | None = None) -> LossLog:
    """Read a CSV training log with a ``step`` column and any numeric columns.

    A ``stage`` column, when present, labels rows; every other column whose non-empty cells all
    parse as numbers is kept; text columns are ignored. ``rows_where = (column, value)`` keeps
    only the rows holding ``value`` in ``column``.

    Raises:
        InputError: missing or unreadable file, no ``step`` column, a non-numeric step, no rows,
            or no numeric column besides ``step``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the log ({err})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    if "step" not in header:
        raise InputError(path, f"no 'step' column (columns: {', '.join(header) or 'none'})")
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if rows_where is not None:
        rows = [row for row in rows if row.get(rows_where[0]) == rows_where[1]]
    if not rows:
        raise InputError(path, "no rows after the header")
    try:
        steps = np.array([float(row["step"]) for row in rows], np.float64)
    except ValueError:
        raise InputError(path, "the 'step' column holds a value that is not a number") from None
    columns: dict[str, np.ndarray] = {}
    for name in header:
        if name in ("step", "stage"):
            continue
        values = _numeric_column([row.get(name, "") for row in rows])
        if values is not None:
            columns[name] = values
    if not columns:
        raise InputError(path, "no numeric columns besides 'step'")
    stages = [row.get("stage", "") for row in rows] if "stage" in header else None
    return LossLog(steps=steps, stages=stages, columns=columns)


def _numeric_column(cells: list[str]) -> np.ndarray | None:
    values = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        if not cell:
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            return None
    return values if np.isfinite(values).any() else None


def loss_curves_figure(log: LossLog) -> Figure:
    """One panel per numeric column against ``step``, one colour per stage.

    Noisy series (more than 50 points) are drawn faintly with a moving average on top. A panel
    uses a log y axis when its values are all positive and span more than a factor of 20.
    """
    names = list(log.columns)
    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure = new_figure(5.2 * columns, 2.8 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    stage_labels = log.stages or [""] * len(log.steps)
    stages = list(dict.fromkeys(stage_labels))
    colours = palette(len(stages))
    for ax, name in zip(axes, names, strict=False):
        values = log.columns[name]
        for colour, stage in zip(colours, stages, strict=True):
            rows_of_stage = np.array([s == stage for s in stage_labels])
            keep = rows_of_stage & np.isfinite(values)
            if not keep.any():
                continue
            x, y = log.steps[keep], values[keep]
            label = f"stage {stage}" if stage else None
            if y.size > 50:
                ax.plot(x, y, color=colour, alpha=0.25, linewidth=0.7)
                ax.plot(x, _moving_average(y, max(2, y.size // 50)), color=colour, label=label)
            else:
                ax.plot(x, y, color=colour, marker="." if y.size < 20 else None, label=label)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if log.stages is not None:
            ax.legend(fontsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle("Training log", fontsize=10)
    return figure


def plot_loss_curves(
    log_csv: str | Path, out_path: str | Path, validation_csv: str | Path | None = None
) -> Path:
    """Write the loss curves of the CSV training log ``log_csv`` as a PNG; returns ``out_path``.

    With ``validation_csv`` (a training run's ``validation.csv``), the mean validation metrics
    over the sets (its ``set = all`` rows) and the score get panels of their own, named
    ``val <metric>``.
    """
    log = read_loss_log(log_csv)
    if validation_csv is not None:
        log = _with_validation(log, read_loss_log(validation_csv, rows_where=("set", "all")))
    return save_figure(loss_curves_figure(log), out_path)


def _with_validation(log: LossLog, validation: LossLog) -> LossLog:
    """One log holding the rows of both, each column NaN in the other's rows."""
    count, extra = log.steps.size, validation.steps.size
    columns = {name: np.concatenate((v, np.full(extra, np.nan))) for name, v in log.columns.items()}
    for name, values in validation.columns.items():
        if name != "seconds":
            columns[f"val {name}"] = np.concatenate((np.full(count, np.nan), values))
    stages = None
    if log.stages is not None or validation.stages is not None:
        stages = (log.stages or [""] * count) + (validation.stages or [""] * extra)
    return LossLog(np.concatenate((log.steps, validation.steps)), stages, columns)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` samples (shorter at the start), same length."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)
