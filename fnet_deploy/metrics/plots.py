"""Metrics across methods and datasets as grouped bar charts (``eval --plot``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.figures import new_figure, palette, save_figure
from fnet_deploy.metrics.registry import METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    colours = palette(len(methods))
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
