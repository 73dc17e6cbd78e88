"""Plots where a table is hard to read: metrics across methods, training losses, latencies.

Every plot is a pure function ``(data, out_path) -> Path`` that writes one PNG atomically; the
matching ``*_figure`` function returns the matplotlib figure instead, for callers (and tests) that
want to inspect or embed it. matplotlib is the optional extra ``plot``: it is imported only when
a figure is made, with the headless Agg canvas (no display, no global pyplot state), and a missing
installation raises :class:`MissingDependencyError`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fnet_deploy.atomic import write_bytes_atomic
from fnet_deploy.errors import FnetError, InputError
from fnet_deploy.metrics.registry import METRICS
from fnet_deploy.optional import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
"""Resolution of every written PNG."""


def new_figure(width: float, height: float) -> Figure:
    """An empty figure (inches) on the Agg canvas, with constrained layout.

    Raises:
        MissingDependencyError: matplotlib (extra ``plot``) is not installed.
    """
    figure: Figure = require("matplotlib.figure").Figure(
        figsize=(width, height), layout="constrained"
    )
    require("matplotlib.backends.backend_agg").FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Render ``figure`` as PNG to ``path`` atomically; returns the path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return write_bytes_atomic(path, buffer.getvalue())


# --- metric bar charts ------------------------------------------------------------------------


def metric_bars_figure(
    evaluations: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> Figure:
    """Grouped bar charts, one panel per metric: datasets on the x axis, one bar per method.

    Args:
        evaluations: dataset name -> evaluation report shaped
            ``{"convention": str, "methods": {method: {"mean": {metric: value},
            "images": {file: {metric: value}}}}}`` (``images`` optional). A single report is
            passed as ``{"<dataset>": report}``.
        metrics: metrics to show, in this order; default: every metric found, in the order of
            :data:`fnet_deploy.metrics.registry.METRICS`, then unknown ones by first appearance.

    Each bar is the method's mean; its whisker is the standard deviation over the per-image
    values when there are at least two. Panel titles say whether higher or lower is better.
    """
    if not evaluations:
        raise FnetError("no evaluation results to plot")
    datasets = list(evaluations)
    methods: list[str] = []
    found: list[str] = []
    for name, report in evaluations.items():
        report_methods = report.get("methods") if isinstance(report, Mapping) else None
        if not isinstance(report_methods, Mapping) or not report_methods:
            raise FnetError(f"evaluation of {name!r}: no 'methods' with results")
        for method, result in report_methods.items():
            if method not in methods:
                methods.append(method)
            means = result.get("mean", {}) if isinstance(result, Mapping) else {}
            found.extend(metric for metric in means if metric not in found)
    if metrics is None:
        known = [m for m in METRICS if m in found]
        metrics = known + [m for m in found if m not in known]
    missing = [m for m in metrics if m not in found]
    if missing or not metrics:
        raise FnetError(f"no values for metrics {missing or 'at all'} in the evaluation results")

    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    width_per_panel = max(3.2, 0.9 + 0.35 * len(datasets) * len(methods))
    figure = new_figure(width_per_panel * columns, 2.9 * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    colours = _palette(len(methods))
    bar_width = 0.8 / len(methods)
    x = np.arange(len(datasets))
    for ax, metric in zip(axes, metrics, strict=False):
        for index, method in enumerate(methods):
            means, spreads = [], []
            for dataset in datasets:
                result = evaluations[dataset]["methods"].get(method, {})
                means.append(float(result.get("mean", {}).get(metric, math.nan)))
                spreads.append(_spread(result.get("images", {}), metric))
            offset = (index - (len(methods) - 1) / 2) * bar_width
            bars = ax.bar(
                x + offset,
                means,
                bar_width,
                yerr=spreads,
                capsize=2,
                color=colours[index],
                label=method,
                error_kw={"elinewidth": 0.8, "alpha": 0.7},
            )
            ax.bar_label(bars, fmt="%.3g", fontsize=6, padding=1)
        ax.set_title(_metric_title(metric), fontsize=9)
        ax.set_xticks(x, datasets, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(6, len(methods)))
    conventions = sorted({str(evaluations[d].get("convention", "?")) for d in datasets})
    figure.suptitle(
        f"Fusion metrics, mean over images (whiskers: std) - convention: {', '.join(conventions)}",
        fontsize=10,
    )
    return figure


def plot_metric_bars(
    evaluations: Mapping[str, Mapping[str, Any]],
    out_path: str | Path,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Write :func:`metric_bars_figure` as a PNG; returns ``out_path``."""
    return save_figure(metric_bars_figure(evaluations, metrics), out_path)


def _metric_title(metric: str) -> str:
    spec = METRICS.get(metric)
    if spec is None:
        return metric
    return f"{metric} ({'higher' if spec.higher_is_better else 'lower'} is better)"


def _spread(images: Mapping[str, Mapping[str, float]], metric: str) -> float:
    values = np.array([float(v[metric]) for v in images.values() if metric in v], np.float64)
    values = values[np.isfinite(values)]
    return float(values.std()) if values.size >= 2 else 0.0


def _palette(count: int) -> list[tuple[float, float, float, float]]:
    cmap = require("matplotlib").colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


# --- training loss curves ---------------------------------------------------------------------


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
    colours = _palette(len(stages))
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


# --- latency distributions --------------------------------------------------------------------


def latency_figure(latencies_ms: Mapping[str, Sequence[float]]) -> Figure:
    """Box plot and histogram of per-frame latencies, one row / colour per backend.

    Args:
        latencies_ms: backend name -> per-frame latencies in milliseconds (finite, >= 0).

    The legend gives each backend's median, 95th percentile and frame count. Both panels use a
    log latency axis when the latencies span more than a factor of 20.
    """
    if not latencies_ms:
        raise FnetError("no latencies to plot")
    names = list(latencies_ms)
    samples = []
    for name in names:
        values = np.asarray(latencies_ms[name], np.float64).ravel()
        if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
            raise FnetError(f"latencies of {name!r}: expected finite values >= 0, at least one")
        samples.append(values)
    colours = _palette(len(names))
    every = np.concatenate(samples)
    wide = every.min() > 0 and every.max() / every.min() > 20
    figure = new_figure(12.0, 1.2 + 0.5 * len(names) + 2.5)
    box_ax, hist_ax = figure.subplots(1, 2, width_ratios=(1, 1.3))
    boxes = box_ax.boxplot(
        samples[::-1],
        orientation="horizontal",
        tick_labels=names[::-1],
        whis=(5, 95),
        patch_artist=True,
        medianprops={"color": "black"},
        flierprops={"markersize": 2, "alpha": 0.5},
    )
    for patch, colour in zip(boxes["boxes"], colours[::-1], strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.6)
    box_ax.set_xlabel("ms per frame\n(box: quartiles, whiskers: 5th-95th percentile)")
    box_ax.grid(axis="x", alpha=0.3)
    count = min(60, max(10, every.size // 5))
    if wide:
        edges = np.geomspace(every.min(), every.max(), count + 1)
        box_ax.set_xscale("log")
        hist_ax.set_xscale("log")
    else:
        edges = np.histogram_bin_edges(every, bins=count)
    for values, name, colour in zip(samples, names, colours, strict=True):
        median, p95 = np.percentile(values, [50, 95])
        label = f"{name}: median {median:.4g} ms, p95 {p95:.4g} ms, n={values.size}"
        hist_ax.hist(values, bins=edges, histtype="stepfilled", alpha=0.35, color=colour)
        hist_ax.hist(values, bins=edges, histtype="step", color=colour, label=label)
        hist_ax.axvline(median, color=colour, linestyle="--", linewidth=1)
    hist_ax.set_xlabel("ms per frame\n(dashed: median)")
    hist_ax.set_ylabel("frames")
    hist_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=1)
    hist_ax.grid(alpha=0.3)
    figure.suptitle("Per-frame latency by backend", fontsize=10)
    return figure


def plot_latency(latencies_ms: Mapping[str, Sequence[float]], out_path: str | Path) -> Path:
    """Write :func:`latency_figure` as a PNG; returns ``out_path``."""
    return save_figure(latency_figure(latencies_ms), out_path)
