"""Per-frame latency distributions of backends: ``bench --plot``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.helpers.figures import new_figure, palette, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    colours = palette(len(names))
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
