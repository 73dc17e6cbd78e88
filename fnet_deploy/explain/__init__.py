"""Interpretability: FNet's intermediates (codes, reconstructions, thresholds) as figures.

``explain_images`` traces a model on one pair and returns an :class:`Explanation` (numbers only);
``write_explanation`` writes its PNGs, ``explain.json``, ``arrays.npz`` and ``index.html``.
Figures need the optional ``plot`` extra (matplotlib).
"""

from fnet_deploy.explain.report import VIEWS, ExplainFiles, explanation_record, write_explanation
from fnet_deploy.explain.trace_maps import Explanation, explain_images, explain_trace

__all__ = [
    "VIEWS",
    "ExplainFiles",
    "Explanation",
    "explain_images",
    "explain_trace",
    "explanation_record",
    "write_explanation",
]
