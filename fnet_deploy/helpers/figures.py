"""Figures written as PNG files: the one place matplotlib is set up.

matplotlib is the optional extra ``plot``: it is imported only when a figure is made, with the
headless Agg canvas (no display, no global pyplot state), and a missing installation raises
:class:`~fnet_deploy.helpers.errors.MissingDependencyError`. Each chart lives beside what it
draws (:mod:`fnet_deploy.metrics.plots`, :mod:`fnet_deploy.training.plots`,
:mod:`fnet_deploy.bench.plots`): a pure function ``(data, out_path) -> Path`` that writes one PNG
atomically, and a ``*_figure`` function that returns the figure for callers and tests.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from fnet_deploy.helpers.atomic import write_bytes_atomic
from fnet_deploy.helpers.optional import require

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


def palette(count: int) -> list[tuple[float, float, float, float]]:
    """``count`` distinct RGBA colours (tab10, or tab20 beyond ten)."""
    cmap = require("matplotlib").colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]
