"""Matplotlib figures of an :class:`Explanation`, one per view of the FNet paper.

Each ``*_figure`` function returns a figure (see :mod:`fnet_deploy.helpers.figures` for the Agg
canvas and the optional ``plot`` extra); :mod:`fnet_deploy.explain.report` saves them as PNGs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fnet_deploy.explain.trace_maps import BLOCKS, Explanation
from fnet_deploy.helpers.figures import new_figure
from fnet_deploy.helpers.optional import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure
    from matplotlib.image import AxesImage

SYMBOLS: dict[str, str] = {"unique_ir": "u", "unique_vis": "v", "common": "z"}
"""Paper symbol of each block's output code."""

TITLES: dict[str, str] = {
    "unique_ir": "u: unique features of the infrared image (LZSC_u)",
    "unique_vis": "v: unique features of the visible image (LZSC_v)",
    "common": "z: common features of both images (LZSC_z)",
}

BLOCK_COLOURS: dict[str, str] = {
    "unique_ir": "tab:red",
    "unique_vis": "tab:blue",
    "common": "tab:green",
}


CHANNEL_PERCENTILE = 99.5
"""Channel maps saturate beyond this percentile of |value| (isolated peaks wash out the rest)."""


def _panel_size(shape: tuple[int, ...], width: float) -> float:
    """Height (inches) of an image panel ``width`` inches wide showing an image of ``shape``."""
    return width * shape[0] / shape[1]


def _show(
    ax: Axes, image: np.ndarray, title: str, cmap: str, vmin: float, vmax: float
) -> AxesImage:
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def inputs_figure(explanation: Explanation) -> Figure:
    """IR input, visible input and the fused output (clamped to [0, 1]) on one grey scale."""
    shape = explanation.ir.shape
    figure = new_figure(12.0, _panel_size(shape, 3.6) + 0.6)
    axes = figure.subplots(1, 3)
    panels = (
        (explanation.ir, "infrared input (ir)"),
        (explanation.vis, "visible luminance input (vis)"),
        (np.clip(explanation.reconstructions["fused"], 0.0, 1.0), "fused output, clamped"),
    )
    shown = [
        _show(ax, image, title, "gray", 0.0, 1.0)
        for ax, (image, title) in zip(axes, panels, strict=True)
    ]
    figure.colorbar(shown[0], ax=list(axes), shrink=0.9, label="intensity")
    figure.suptitle("Inputs and output", fontsize=11)
    return figure


def features_figure(explanation: Explanation, block: str) -> Figure:
    """One code (u, v or z): energy map, energy of every channel, and the strongest channels.

    The energy map uses a square-root colour scale (the energy is concentrated in few pixels);
    channel maps use a diverging scale symmetric about 0, one range per channel, reaching the
    :data:`CHANNEL_PERCENTILE` percentile of |value| (colour bars with arrows mark saturation).
    """
    maps = explanation.features[block]
    shape = maps.energy_map.shape
    count = len(maps.top_channels)
    columns = min(4, max(1, count))
    rows = -(-count // columns)
    top_height = max(_panel_size(shape, 5.0), 3.0) + 0.5
    grid_height = rows * (_panel_size(shape, 12.0 / columns - 0.5) + 0.45)
    figure = new_figure(12.0, top_height + grid_height + 0.5)
    top_fig, grid_fig = figure.subfigures(
        2, 1, squeeze=False, height_ratios=(top_height, grid_height)
    ).ravel()
    _energy_row(top_fig, explanation, block)
    _channel_grid(grid_fig, explanation, block, rows, columns)
    figure.suptitle(TITLES[block], fontsize=11)
    return figure


def _energy_row(subfigure: SubFigure, explanation: Explanation, block: str) -> None:
    power_norm = require("matplotlib.colors").PowerNorm
    maps = explanation.features[block]
    symbol = SYMBOLS[block]
    map_ax, bar_ax = subfigure.subplots(1, 2, width_ratios=(1.1, 1))
    peak = float(maps.energy_map.max())
    shown = map_ax.imshow(
        maps.energy_map,
        cmap="magma",
        norm=power_norm(0.5, vmin=0.0, vmax=peak if peak > 0 else 1.0),
        interpolation="nearest",
    )
    map_ax.set_title(
        f"energy map: sum over channels of {symbol}_c^2 (square-root scale)", fontsize=9
    )
    map_ax.set_xticks([])
    map_ax.set_yticks([])
    subfigure.colorbar(shown, ax=map_ax, shrink=0.9, label="energy")

    energies = maps.channel_energy
    colours = np.full(energies.size, "lightgray", dtype=object)
    colours[maps.top_channels] = BLOCK_COLOURS[block]
    total = float(energies.sum())
    shown_energies = np.where(energies > 0, energies, np.nan)
    bar_ax.bar(np.arange(energies.size), shown_energies, width=0.85, color=list(colours))
    if np.nanmin(shown_energies, initial=np.inf) < np.inf:
        bar_ax.set_yscale("log")
    share = float(energies[maps.top_channels].sum() / total) if total > 0 else 0.0
    bar_ax.set_title(
        f"mean energy per channel; top {len(maps.top_channels)} (coloured) hold {share:.0%}",
        fontsize=9,
    )
    bar_ax.set_xlabel("channel", fontsize=8)
    bar_ax.set_ylabel(f"mean {symbol}_c^2 (log)", fontsize=8)
    bar_ax.tick_params(labelsize=7)
    bar_ax.grid(axis="y", alpha=0.3)


def _channel_grid(
    subfigure: SubFigure, explanation: Explanation, block: str, rows: int, columns: int
) -> None:
    maps = explanation.features[block]
    symbol = SYMBOLS[block]
    total = float(maps.channel_energy.sum())
    axes = subfigure.subplots(rows, columns, squeeze=False).ravel()
    for ax, channel, image in zip(axes, maps.top_channels, maps.top_maps, strict=False):
        magnitude = np.abs(image)
        reach = float(np.percentile(magnitude, CHANNEL_PERCENTILE)) or float(magnitude.max())
        reach = reach or 1.0
        share = maps.channel_energy[channel] / total if total > 0 else 0.0
        shown = _show(
            ax, image, f"{symbol}[{channel}]: {share:.1%} of energy", "RdBu_r", -reach, reach
        )
        extend = "both" if magnitude.max() > reach else "neither"
        colourbar = subfigure.colorbar(shown, ax=ax, shrink=0.85, extend=extend)
        colourbar.ax.tick_params(labelsize=6)
    for ax in axes[len(maps.top_channels) :]:
        ax.set_visible(False)
    subfigure.suptitle(
        f"strongest {len(maps.top_channels)} channels of {symbol} (red > 0 > blue)", fontsize=9
    )


def reconstructions_figure(explanation: Explanation) -> Figure:
    """Du(u), Dz(z), Dv(v) and their sum (the unclamped fused image) on one shared scale."""
    recs = explanation.reconstructions
    panels = (
        (recs["rec_ir"], "Du(u): from IR-unique features"),
        (recs["rec_common"], "Dz(z): from common features"),
        (recs["rec_vis"], "Dv(v): from visible-unique features"),
        (recs["fused"], "sum = fused (unclamped)"),
    )
    low = min(float(image.min()) for image, _ in panels)
    high = max(float(image.max()) for image, _ in panels)
    shape = recs["fused"].shape
    figure = new_figure(13.0, 2 * _panel_size(shape, 3.0) + 1.2)
    axes = figure.subplots(2, 4)
    shared = [
        _show(ax, image, title, "gray", low, high)
        for ax, (image, title) in zip(axes[0], panels, strict=True)
    ]
    figure.colorbar(shared[0], ax=list(axes[0]), shrink=0.9, label="shared scale")
    for ax, (image, title) in zip(axes[1], panels, strict=True):
        own = _show(ax, image, title, "viridis", float(image.min()), float(image.max()))
        colourbar = figure.colorbar(own, ax=ax, shrink=0.85)
        colourbar.ax.tick_params(labelsize=6)
    figure.suptitle(
        "Reconstructions: top row on one shared grey scale (contribution to the sum), "
        "bottom row each on its own scale (structure)",
        fontsize=10,
    )
    return figure


def thresholds_figure(explanation: Explanation) -> Figure:
    """theta_k, rho_k and the suppressed share per block against the iteration k."""
    figure = new_figure(13.0, 3.6)
    theta_ax, rho_ax, share_ax = figure.subplots(1, 3)
    for block in BLOCKS:
        steps = np.arange(explanation.thetas[block].size)
        style = {"color": BLOCK_COLOURS[block], "marker": "o", "label": SYMBOLS[block]}
        theta_ax.plot(steps, explanation.thetas[block], **style)
        rho_ax.plot(steps, explanation.rhos[block], **style)
        share_ax.plot(steps, 100.0 * explanation.suppressed[block], **style)
    theta_ax.set_yscale("log")
    theta_ax.set_title("learned threshold theta_k (log scale)", fontsize=9)
    rho_ax.set_title("momentum weight rho_k", fontsize=9)
    share_ax.set_title("suppressed entries: |pre-threshold| < theta_k", fontsize=9)
    share_ax.set_ylabel("% of code entries", fontsize=8)
    share_ax.set_ylim(0, 100)
    for ax in (theta_ax, rho_ax, share_ax):
        ax.set_xlabel("iteration k (0 = initial estimate)", fontsize=8)
        ax.set_xticks(np.arange(explanation.thetas[BLOCKS[0]].size))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(title="block output", fontsize=7, title_fontsize=7)
    figure.suptitle("Thresholds and sparsity across the unrolled iterations", fontsize=11)
    return figure


def histogram_figure(explanation: Explanation, block: str) -> Figure:
    """Pre- vs post-threshold values of a block's last step, with +-theta and the zeroed share.

    The value axis is an asinh scale with linear width theta: linear inside the threshold band,
    logarithmic in the tails, and the bins are equally wide on it.
    """
    hist = explanation.histograms[block]
    symbol = SYMBOLS[block]
    figure = new_figure(7.5, 3.8)
    ax = figure.subplots()
    theta = hist.theta
    ax.axvspan(-theta, theta, color="0.9", label=f"|x| < theta_{hist.step} = {theta:.3g}")
    ax.stairs(hist.pre_counts, hist.bin_edges, color="0.35", label="before threshold")
    ax.stairs(
        hist.post_counts,
        hist.bin_edges,
        color=BLOCK_COLOURS[block],
        fill=True,
        alpha=0.45,
        label=f"after threshold ({symbol})",
    )
    ax.set_xscale("asinh", linear_width=theta)
    ax.set_xlim(hist.bin_edges[0], hist.bin_edges[-1])
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    ax.set_xlabel("value (asinh scale, linear within +-theta)", fontsize=8)
    ax.set_ylabel("entries per bin (log)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(
        f"{symbol}, iteration k = {hist.step}: {hist.suppressed_share:.1%} of entries suppressed",
        fontsize=10,
    )
    return figure
