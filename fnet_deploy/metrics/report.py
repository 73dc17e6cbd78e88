"""Evaluate fused images of one or more methods against paired source folders, and write reports.

Typical use (what the CLI does)::

    pairings = pair_methods("data/TNO/ir", "data/TNO/vi", {"FNet": "out/fnet", "max": "out/max"})
    unpaired = [path for p in pairings.values() for path in p.unpaired]    # print one line
    total = sum(len(p.triples) for p in pairings.values())                 # progress bar size
    result = evaluate(pairings, convention="paper", progress=lambda n: bar.advance(task, n))
    write_json(result, "metrics.json"); write_csv(result, "metrics.csv")
    print(markdown_table(result))
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np

from fnet_deploy.data.pairs import list_images
from fnet_deploy.helpers.errors import InputError
from fnet_deploy.metrics.inputs import Convention, check_convention
from fnet_deploy.metrics.registry import METRICS, check_metric_names, compute_metrics

Luminance = Literal["bt601", "bt709"]
"""How a colour image becomes grey. ``bt601``: 0.299 R + 0.587 G + 0.114 B, OpenCV's full-range
``COLOR_BGR2GRAY`` on the float image, rounded to the nearest integer (how the CDDFuse evaluator
reads images, and FNet's test script up to OpenCV's fixed-point rounding). ``bt709``:
0.2126 R + 0.7152 G + 0.0722 B, rounded. Grey images are unchanged by both."""

LUMINANCES: tuple[Luminance, ...] = get_args(Luminance)

_BT709_BGR = np.array([0.0722, 0.7152, 0.2126], dtype=np.float32)


def check_luminance(luminance: str) -> Luminance:
    """Return ``luminance`` if it names a luminance convention, else raise ``ValueError``."""
    for known in LUMINANCES:
        if luminance == known:
            return known
    raise ValueError(f"unknown luminance {luminance!r}; expected one of {LUMINANCES}")


def read_gray(path: str | Path, luminance: Luminance = "bt601") -> np.ndarray:
    """Read an image file as an H x W ``uint8`` grey image.

    The file is decoded by OpenCV as 8-bit BGR (``cv2.imread`` defaults: EXIF orientation applied,
    alpha dropped, 16-bit scaled to 8-bit, grey replicated to three channels) and converted with the
    ``luminance`` weights. Raises ``InputError(path, ...)`` if the file cannot be decoded.
    """
    luminance = check_luminance(luminance)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(path, "cannot be read as an image")
    colour = bgr.astype(np.float32)
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY) if luminance == "bt601" else colour @ _BT709_BGR
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Triple:
    """One fused image and its two sources, paired by file stem."""

    name: str
    """The fused image's file name: the key of this image in every report."""
    ir: Path
    vis: Path
    fused: Path


@dataclass(frozen=True)
class Pairing:
    """The fused images of one method matched to their source pairs."""

    triples: tuple[Triple, ...]
    """Complete triples, sorted by stem."""
    unpaired: tuple[Path, ...]
    """Image files in any of the three folders whose stem is missing from another, sorted."""


def pair_images(ir_dir: str | Path, vis_dir: str | Path, fused_dir: str | Path) -> Pairing:
    """Match files of the three folders by stem (``19.png`` in ``ir`` with ``19.jpg`` in ``vis``).

    Raises ``InputError`` for a folder that does not exist, two images with the same stem in one
    folder, or no complete triple at all. Unmatched files are returned, not raised.
    """
    folders = (Path(ir_dir), Path(vis_dir), Path(fused_dir))
    ir, vis, fused = (list_images(folder) for folder in folders)
    complete = ir.keys() & vis.keys() & fused.keys()
    if not complete:
        raise InputError(
            folders[2],
            f"no fused image has a matching pair of sources in {folders[0]} and {folders[1]}",
        )
    triples = tuple(
        Triple(name=fused[stem].name, ir=ir[stem], vis=vis[stem], fused=fused[stem])
        for stem in sorted(complete)
    )
    unpaired = sorted(
        path for index in (ir, vis, fused) for stem, path in index.items() if stem not in complete
    )
    return Pairing(triples=triples, unpaired=tuple(unpaired))


def pair_methods(
    ir_dir: str | Path, vis_dir: str | Path, fused_dirs: Mapping[str, str | Path]
) -> dict[str, Pairing]:
    """``pair_images`` for each method name -> folder of its fused images."""
    return {method: pair_images(ir_dir, vis_dir, folder) for method, folder in fused_dirs.items()}


@dataclass(frozen=True)
class MethodResult:
    """Per-image metric values of one method and their means over its images."""

    mean: dict[str, float]
    """Plain mean per metric over all images (NaN or inf if an image has one)."""
    images: dict[str, dict[str, float]]
    """Fused file name -> metric name -> value, in pairing order."""


@dataclass(frozen=True)
class Evaluation:
    """Metric values of several methods, with the conventions that produced them."""

    convention: Convention
    luminance: Luminance
    metrics: tuple[str, ...]
    methods: dict[str, MethodResult]
    unpaired: dict[str, tuple[Path, ...]]
    """Method name -> files left out because their stem did not match (see ``Pairing``)."""


def _read_triple(triple: Triple, luminance: Luminance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ir = read_gray(triple.ir, luminance)
    vis = read_gray(triple.vis, luminance)
    fused = read_gray(triple.fused, luminance)
    for path, image in ((triple.vis, vis), (triple.fused, fused)):
        if image.shape != ir.shape:
            raise InputError(
                path,
                f"size {image.shape[0]}x{image.shape[1]} differs from "
                f"{ir.shape[0]}x{ir.shape[1]} of {triple.ir}",
            )
    return fused, ir, vis


def evaluate(
    pairings: Mapping[str, Pairing],
    convention: Convention = "paper",
    luminance: Luminance = "bt601",
    metrics: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    done: dict[str, dict[str, dict[str, float]]] | None = None,
) -> Evaluation:
    """Compute ``metrics`` (default: all) for every triple of every method.

    ``pairings``: method name -> ``Pairing`` (from ``pair_methods``). Images are read with
    ``read_gray(path, luminance)``. ``progress``, if given, is called with 1 after each image.
    ``done``, if given, receives each image's values as soon as they are computed (method ->
    fused file name -> metric -> value), so that a caller interrupted midway keeps them (and
    reports them with :func:`summarize`).
    Raises ``InputError`` for an unreadable file or a size mismatch within a triple.
    """
    convention = check_convention(convention)
    luminance = check_luminance(luminance)
    names = check_metric_names(metrics)
    done = {} if done is None else done
    for method, pairing in pairings.items():
        images = done.setdefault(method, {})
        for triple in pairing.triples:
            fused, ir, vis = _read_triple(triple, luminance)
            images[triple.name] = compute_metrics(fused, ir, vis, convention, names).values
            if progress is not None:
                progress(1)
    return summarize(done, pairings, convention, luminance, names)


def summarize(
    done: Mapping[str, Mapping[str, dict[str, float]]],
    pairings: Mapping[str, Pairing],
    convention: Convention,
    luminance: Luminance,
    metrics: Sequence[str] | None = None,
) -> Evaluation:
    """The evaluation of the per-image values in ``done`` (as :func:`evaluate` fills it: every
    image, or those finished before an interruption), with means over them; a method without
    any finished image is left out."""
    names = check_metric_names(metrics)
    methods = {
        method: MethodResult(
            mean={name: float(np.mean([v[name] for v in images.values()])) for name in names},
            images=dict(images),
        )
        for method, images in done.items()
        if images
    }
    return Evaluation(
        convention=convention,
        luminance=luminance,
        metrics=names,
        methods=methods,
        unpaired={method: pairing.unpaired for method, pairing in pairings.items()},
    )


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_json(evaluation: Evaluation) -> dict[str, Any]:
    """The JSON report: ``{"convention", "luminance", "methods": {name: {"mean", "images"}}}``.

    ``mean`` maps metric -> value, ``images`` maps fused file name -> metric -> value. Non-finite
    values (PSNR of identical images, undefined Qabf/Qcb) become ``null``.
    """
    return {
        "convention": evaluation.convention,
        "luminance": evaluation.luminance,
        "methods": {
            method: {
                "mean": {name: _json_number(value) for name, value in result.mean.items()},
                "images": {
                    image: {name: _json_number(value) for name, value in values.items()}
                    for image, values in result.images.items()
                },
            }
            for method, result in evaluation.methods.items()
        },
    }


def write_json(evaluation: Evaluation, path: str | Path) -> None:
    """Write ``to_json(evaluation)`` to ``path`` (UTF-8, indented)."""
    text = json.dumps(to_json(evaluation), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def write_csv(evaluation: Evaluation, path: str | Path) -> None:
    """Write one row per method and image: convention, luminance, method, image, then metrics."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["convention", "luminance", "method", "image", *evaluation.metrics])
        for method, result in evaluation.methods.items():
            for image, values in result.images.items():
                row = [repr(values[name]) for name in evaluation.metrics]
                writer.writerow([evaluation.convention, evaluation.luminance, method, image, *row])


def markdown_table(evaluation: Evaluation, digits: int = 4) -> str:
    """A markdown table of the per-method means, preceded by a line naming the conventions.

    Columns are marked with an up arrow (higher is better) or a down arrow (lower is better).
    """
    header = [
        f"{name} {'↑' if METRICS[name].higher_is_better else '↓'}" for name in evaluation.metrics
    ]
    lines = [
        f"Metric convention: {evaluation.convention}; luminance: {evaluation.luminance}.",
        "",
        "| Method | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    for method, result in evaluation.methods.items():
        cells = [f"{result.mean[name]:.{digits}f}" for name in evaluation.metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(evaluation: Evaluation, path: str | Path, digits: int = 4) -> None:
    """Write ``markdown_table(evaluation, digits)`` to ``path``."""
    Path(path).write_text(markdown_table(evaluation, digits), encoding="utf-8")
