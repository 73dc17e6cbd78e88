"""The explain page: the views of an explanation with captions, as one self-contained HTML file.

The page is rendered from the JSON record (:func:`fnet_deploy.explain.report.explanation_record`)
so that page and numbers cannot disagree. Images are referenced by relative file name: the folder
can be moved or archived as a whole. No scripts, no external resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import PurePath
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; color: #444; max-width: 75em; margin-top: 0.4em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.row { display: flex; flex-wrap: wrap; gap: 1em; }
.row figure { flex: 1 1 30em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.9em; }
dt { font-weight: 600; }
"""

_SECTIONS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    (
        "Inputs and output",
        "What went in and what came out.",
        ("inputs",),
        False,
    ),
    (
        "Unique and common features",
        "FNet splits the pair into sparse codes: u holds what only the infrared image has, "
        "v what only the visible image has, and z what both share.",
        ("features_u", "features_v", "features_z"),
        False,
    ),
    (
        "Reconstructions",
        "Each code is decoded by its own convolution; the fused image is exactly their sum.",
        ("reconstructions",),
        False,
    ),
    (
        "Learned thresholds",
        "Each LZSC block unrolls an l0 sparse-coding iteration whose threshold is learned.",
        ("thresholds",),
        False,
    ),
    (
        "Thresholding at the last iteration",
        "How the smooth l0 threshold reshapes each block's values at its output step.",
        ("histogram_u", "histogram_v", "histogram_z"),
        True,
    ),
)


def _figure(view: Mapping[str, str]) -> str:
    file, caption = escape(view["file"]), escape(view["caption"])
    return (
        f'<figure><a href="{file}"><img src="{file}" alt="{caption}"></a>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _threshold_table(thresholds: Mapping[str, Mapping[str, Any]]) -> str:
    steps = len(next(iter(thresholds.values()))["theta"])
    head = "".join(f"<th>k = {k}</th>" for k in range(steps))
    rows = []
    for entry in thresholds.values():
        symbol = escape(str(entry["symbol"]))
        for key, label, fmt in (
            ("theta", "theta", "{:.4g}"),
            ("rho", "rho", "{:.3f}"),
            ("suppressed_share", "suppressed", "{:.1%}"),
        ):
            cells = "".join(f"<td>{fmt.format(value)}</td>" for value in entry[key])
            rows.append(f"<tr><td>{label} ({symbol})</td>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def render_html(record: Mapping[str, Any], json_name: str) -> str:
    """The page for an explanation record; ``json_name`` is the record's file, linked."""
    views = record["views"]
    run = record.get("run", {})
    title = "FNet explanation"
    if "ir" in run and "vis" in run:
        title += f": {PurePath(run['ir']).name} + {PurePath(run['vis']).name}"
    details = "".join(
        f"<dt>{escape(str(key))}</dt><dd>{escape(_text(value))}</dd>" for key, value in run.items()
    )
    height, width = record["size_hw"]
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<dl>{details}<dt>size</dt><dd>{width} x {height} pixels</dd></dl>",
    ]
    for heading, intro, names, in_row in _SECTIONS:
        body.append(f"<h2>{escape(heading)}</h2><p>{escape(intro)}</p>")
        figures = "".join(_figure(views[name]) for name in names if name in views)
        body.append(f'<div class="row">{figures}</div>' if in_row else figures)
        if "thresholds" in names:
            body.append(_threshold_table(record["thresholds"]))
    recon = record["reconstructions"]
    arrays = escape(record["arrays"]["file"])
    body.append(
        "<h2>Numbers</h2>"
        f'<p>Every number behind these plots is in <a href="{escape(json_name)}">'
        f'{escape(json_name)}</a>; the image-sized arrays are in <a href="{arrays}">{arrays}</a>'
        " (NumPy .npz). Largest |Du(u) + Dz(z) + Dv(v) - fused| over the image: "
        f"{recon['sum_max_abs_error']:.3g}.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
