"""Writing an explanation to a folder: one PNG per view, the numbers, and an HTML page.

Folder contents (names fixed, see :data:`VIEWS`):

- ``inputs.png``, ``features_u.png``, ``features_v.png``, ``features_z.png``,
  ``reconstructions.png``, ``thresholds.png``, ``threshold_histogram_{u,v,z}.png``;
- ``explain.json``: every number behind the plots (channel energies, top channels, thetas, rhos,
  suppressed shares, histogram edges and counts) and summaries of the image views;
- ``arrays.npz``: the image-sized arrays behind the image views (inputs, reconstructions, fused,
  energy maps, strongest channel maps), float32;
- ``index.html``: the views laid out with captions, images referenced by relative file name.

Every file is written atomically; ``index.html`` is written last.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fnet_deploy.explain import figures
from fnet_deploy.explain.html import render_html
from fnet_deploy.explain.trace_maps import BLOCKS, RECONSTRUCTIONS, Explanation
from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.figures import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMAT = "fnet-deploy-explain/1"
JSON_NAME = "explain.json"
ARRAYS_NAME = "arrays.npz"
HTML_NAME = "index.html"


@dataclass(frozen=True)
class View:
    """One picture of the explanation: its file, how it is drawn, and its caption."""

    name: str
    file: str
    draw: Callable[[Explanation], Figure]
    caption: Callable[[Explanation], str]


def _feature_caption(block: str) -> Callable[[Explanation], str]:
    def caption(explanation: Explanation) -> str:
        maps = explanation.features[block]
        symbol = figures.SYMBOLS[block]
        energies = maps.channel_energy
        share = energies[maps.top_channels].sum() / energies.sum() if energies.sum() > 0 else 0.0
        return (
            f"{figures.TITLES[block]}. Left: where the code is active, the per-pixel energy "
            f"sum_c {symbol}_c^2. Right: the mean energy of each of the {energies.size} channels "
            f"(log scale); the {len(maps.top_channels)} strongest hold {share:.0%} of it. "
            "Bottom: those channels, strongest first, on a diverging scale symmetric about 0 "
            "that saturates at the 99.5th percentile of |value|."
        )

    return caption


def _histogram_caption(block: str) -> Callable[[Explanation], str]:
    def caption(explanation: Explanation) -> str:
        hist = explanation.histograms[block]
        symbol = figures.SYMBOLS[block]
        return (
            f"Block output {symbol}, last iteration k = {hist.step}: values fed to the threshold "
            f"(grey line) and the thresholded code (filled), with the band |x| < theta_{hist.step}"
            f" = {hist.theta:.3g} shaded. {hist.suppressed_share:.1%} of the entries fall inside "
            "the band and are pushed towards 0."
        )

    return caption


VIEWS: tuple[View, ...] = (
    View(
        "inputs",
        "inputs.png",
        figures.inputs_figure,
        lambda e: "The two inputs as FNet sees them and the fused output clamped to [0, 1].",
    ),
    *(
        View(
            f"features_{figures.SYMBOLS[block]}",
            f"features_{figures.SYMBOLS[block]}.png",
            partial(figures.features_figure, block=block),
            _feature_caption(block),
        )
        for block in BLOCKS
    ),
    View(
        "reconstructions",
        "reconstructions.png",
        figures.reconstructions_figure,
        lambda e: (
            "The three decoder outputs Du(u), Dz(z), Dv(v) and their sum, which is the fused "
            "image before clamping. Top: one shared grey scale, so brightness shows how much each "
            "part contributes. Bottom: each on its own scale, to show its structure."
        ),
    ),
    View(
        "thresholds",
        "thresholds.png",
        figures.thresholds_figure,
        lambda e: (
            "Learned thresholds theta_k = softplus(w_theta k + b_theta) and momentum weights rho_k"
            " of each LZSC block against the iteration k, and the share of code entries whose "
            "pre-threshold value lies inside +-theta_k (suppressed towards 0) on this image pair."
        ),
    ),
    *(
        View(
            f"histogram_{figures.SYMBOLS[block]}",
            f"threshold_histogram_{figures.SYMBOLS[block]}.png",
            partial(figures.histogram_figure, block=block),
            _histogram_caption(block),
        )
        for block in BLOCKS
    ),
)


@dataclass
class ExplainFiles:
    """Paths written by :func:`write_explanation`."""

    folder: Path
    html: Path
    json: Path
    arrays: Path
    figures: dict[str, Path]


def explanation_record(explanation: Explanation, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of an explanation (plain lists and floats).

    Args:
        explanation: what to record.
        meta: inputs, weights and options to record under ``"run"`` (JSON-serialisable).
    """
    recs = explanation.reconstructions
    parts_sum = recs["rec_ir"] + recs["rec_common"] + recs["rec_vis"]
    features = {}
    for block in BLOCKS:
        maps = explanation.features[block]
        total = float(maps.channel_energy.sum())
        argmax = np.unravel_index(int(np.argmax(maps.energy_map)), maps.energy_map.shape)
        features[block] = {
            "symbol": figures.SYMBOLS[block],
            "channel_energy": maps.channel_energy.tolist(),
            "top_channels": maps.top_channels.tolist(),
            "top_energy_share": [
                float(maps.channel_energy[c] / total) if total > 0 else 0.0
                for c in maps.top_channels
            ],
            "energy_map": {
                "max": float(maps.energy_map.max()),
                "mean": float(maps.energy_map.mean()),
                "argmax_row_col": [int(argmax[0]), int(argmax[1])],
            },
        }
    return {
        "format": FORMAT,
        "run": dict(meta),
        "size_hw": list(explanation.ir.shape),
        "views": {
            view.name: {"file": view.file, "caption": view.caption(explanation)} for view in VIEWS
        },
        "arrays": {
            "file": ARRAYS_NAME,
            "keys": {
                "ir, vis": "inputs, H x W in [0, 1]",
                "rec_ir, rec_common, rec_vis, fused": "Du(u), Dz(z), Dv(v) and their sum, H x W",
                "energy_{u,v,z}": "per-pixel energy sum_c x_c^2, H x W",
                "channels_{u,v,z}": "strongest channels (top_channels order), n x H x W",
            },
        },
        "features": features,
        "reconstructions": {
            **{
                name: {
                    "min": float(recs[name].min()),
                    "max": float(recs[name].max()),
                    "mean": float(recs[name].mean()),
                }
                for name in (*RECONSTRUCTIONS, "fused")
            },
            "sum_max_abs_error": float(np.abs(parts_sum - recs["fused"]).max()),
        },
        "thresholds": {
            block: {
                "symbol": figures.SYMBOLS[block],
                "theta": explanation.thetas[block].tolist(),
                "rho": explanation.rhos[block].tolist(),
                "suppressed_share": explanation.suppressed[block].tolist(),
            }
            for block in BLOCKS
        },
        "histograms": {
            block: {
                "step": hist.step,
                "theta": hist.theta,
                "suppressed_share": hist.suppressed_share,
                "bin_edges": hist.bin_edges.tolist(),
                "pre_counts": hist.pre_counts.tolist(),
                "post_counts": hist.post_counts.tolist(),
            }
            for block, hist in explanation.histograms.items()
        },
    }


def _arrays(explanation: Explanation) -> dict[str, Any]:
    arrays = {"ir": explanation.ir, "vis": explanation.vis, **explanation.reconstructions}
    for block in BLOCKS:
        symbol = figures.SYMBOLS[block]
        arrays[f"energy_{symbol}"] = explanation.features[block].energy_map
        arrays[f"channels_{symbol}"] = explanation.features[block].top_maps
    return {name: np.asarray(array, np.float32) for name, array in arrays.items()}


def write_explanation(
    explanation: Explanation, folder: str | Path, meta: Mapping[str, Any]
) -> ExplainFiles:
    """Write every view as PNG, then ``arrays.npz``, ``explain.json`` and ``index.html``.

    Args:
        explanation: from :func:`fnet_deploy.explain.trace_maps.explain_images`.
        folder: output folder (created if missing; files of the same names are replaced).
        meta: what was explained (inputs, weights, options), recorded in the JSON and the page.
    """
    folder = Path(folder)
    written = {}
    for view in VIEWS:
        figure = view.draw(explanation)
        written[view.name] = save_figure(figure, folder / view.file)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **_arrays(explanation))
    arrays = write_bytes_atomic(folder / ARRAYS_NAME, buffer.getvalue())
    record = explanation_record(explanation, meta)
    json_path = write_bytes_atomic(folder / JSON_NAME, json.dumps(record, indent=1).encode())
    html = write_bytes_atomic(folder / HTML_NAME, render_html(record, JSON_NAME).encode())
    return ExplainFiles(folder=folder, html=html, json=json_path, arrays=arrays, figures=written)
