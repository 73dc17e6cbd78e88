"""Tests of the evaluation API: reading, pairing, evaluating and writing reports."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fnet_deploy.helpers.errors import InputError
from fnet_deploy.metrics import compute_metrics
from fnet_deploy.metrics.report import (
    Evaluation,
    Luminance,
    evaluate,
    markdown_table,
    pair_images,
    pair_methods,
    read_gray,
    to_json,
    write_csv,
    write_json,
    write_markdown,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """A path under the shared data folder; skips the test if it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def pattern(seed: int, shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 120 + 60 * np.sin(x / 4.0 + seed) * np.cos(y / 6.0) + rng.normal(0, 6, shape)
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """ir/vis/fused folders: 'a' and 'b' complete, 'c' without fused, 'd' fused only."""
    for stem, seed in (("a", 1), ("b", 2), ("c", 3)):
        write(tmp_path / "ir" / f"{stem}.png", pattern(seed))
        write(tmp_path / "vis" / f"{stem}.png", pattern(seed + 10))
    for stem, seed in (("a", 20), ("b", 21), ("d", 22)):
        write(tmp_path / "fused" / f"{stem}.png", pattern(seed))
    (tmp_path / "fused" / "notes.txt").write_text("not an image")
    return tmp_path


# --- reading ----------------------------------------------------------------------------------


def test_read_gray_luminance_conventions(tmp_path: Path) -> None:
    bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 200, 90  # B, G, R
    path = write(tmp_path / "colour.png", bgr)
    assert np.all(read_gray(path) == round(0.299 * 90 + 0.587 * 200 + 0.114 * 10))
    assert np.all(read_gray(path, "bt709") == round(0.2126 * 90 + 0.7152 * 200 + 0.0722 * 10))


def test_read_gray_keeps_grey_images(tmp_path: Path) -> None:
    grey = pattern(4)
    one = write(tmp_path / "one.png", grey)
    three = write(tmp_path / "three.png", np.dstack([grey, grey, grey]))
    luminances: tuple[Luminance, ...] = ("bt601", "bt709")
    for luminance in luminances:
        assert np.array_equal(read_gray(one, luminance), grey)
        assert np.array_equal(read_gray(three, luminance), grey)


def test_read_gray_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot be read") as info:
        read_gray(bad)
    assert info.value.path == bad
    with pytest.raises(ValueError, match="luminance"):
        read_gray(bad, "srgb")  # type: ignore[arg-type]


# --- pairing ----------------------------------------------------------------------------------


def test_pairing_by_stem_reports_unpaired(dataset: Path) -> None:
    pairing = pair_images(dataset / "ir", dataset / "vis", dataset / "fused")
    assert [t.name for t in pairing.triples] == ["a.png", "b.png"]
    assert pairing.triples[0].ir == dataset / "ir" / "a.png"
    assert pairing.triples[0].vis == dataset / "vis" / "a.png"
    assert pairing.unpaired == (
        dataset / "fused" / "d.png",
        dataset / "ir" / "c.png",
        dataset / "vis" / "c.png",
    )


def test_pairing_accepts_other_extensions(tmp_path: Path) -> None:
    write(tmp_path / "ir" / "x.jpg", pattern(1))
    write(tmp_path / "vis" / "x.JPG", pattern(2))
    write(tmp_path / "out" / "x.png", pattern(3))
    pairing = pair_images(tmp_path / "ir", tmp_path / "vis", tmp_path / "out")
    assert [(t.name, t.ir.name, t.vis.name) for t in pairing.triples] == [
        ("x.png", "x.jpg", "x.JPG")
    ]
    assert pairing.unpaired == ()


def test_pairing_errors(dataset: Path) -> None:
    with pytest.raises(InputError, match="folder not found"):
        pair_images(dataset / "ir", dataset / "vis", dataset / "missing")
    write(dataset / "fused" / "a.jpg", pattern(5))
    with pytest.raises(InputError, match="two images share the name 'a'"):
        pair_images(dataset / "ir", dataset / "vis", dataset / "fused")
    write(dataset / "other" / "zzz.png", pattern(5))
    with pytest.raises(InputError, match="no fused image"):
        pair_images(dataset / "ir", dataset / "vis", dataset / "other")


def test_size_mismatch_names_the_file(dataset: Path) -> None:
    write(dataset / "fused" / "b.png", pattern(6, (40, 50)))
    pairings = pair_methods(dataset / "ir", dataset / "vis", {"m": dataset / "fused"})
    with pytest.raises(InputError, match="size 40x50 differs from 40x48") as info:
        evaluate(pairings, metrics=["EN"])
    assert info.value.path == dataset / "fused" / "b.png"


# --- evaluating -------------------------------------------------------------------------------


def test_evaluate_matches_compute_metrics(dataset: Path) -> None:
    write(dataset / "copy" / "a.png", pattern(1))  # fused = the IR source itself
    pairings = pair_methods(
        dataset / "ir", dataset / "vis", {"method": dataset / "fused", "copy": dataset / "copy"}
    )
    calls: list[int] = []
    result = evaluate(pairings, convention="standard", progress=calls.append)
    assert calls == [1, 1, 1]
    assert result.convention == "standard"
    assert result.luminance == "bt601"
    assert list(result.methods) == ["method", "copy"]
    method = result.methods["method"]
    assert list(method.images) == ["a.png", "b.png"]
    expected = compute_metrics(pattern(20), pattern(1), pattern(11), "standard").values
    assert method.images["a.png"] == expected
    for name, mean in method.mean.items():
        assert mean == pytest.approx((expected[name] + method.images["b.png"][name]) / 2)
    assert result.unpaired["copy"] == (
        dataset / "ir" / "b.png",
        dataset / "ir" / "c.png",
        dataset / "vis" / "b.png",
        dataset / "vis" / "c.png",
    )


def test_evaluate_subset_of_metrics(dataset: Path) -> None:
    pairings = pair_methods(dataset / "ir", dataset / "vis", {"m": dataset / "fused"})
    result = evaluate(pairings, metrics=["SSIM", "MI"])
    assert result.metrics == ("SSIM", "MI")
    assert list(result.methods["m"].mean) == ["SSIM", "MI"]


# --- writers ----------------------------------------------------------------------------------


@pytest.fixture
def evaluation(dataset: Path) -> Evaluation:
    write(dataset / "copy" / "a.png", pattern(1))
    write(dataset / "vis" / "a.png", pattern(1))  # F = A = B: PSNR is infinite
    pairings = pair_methods(
        dataset / "ir", dataset / "vis", {"method": dataset / "fused", "copy": dataset / "copy"}
    )
    return evaluate(pairings, metrics=["MI", "CE", "PSNR"])


def test_json_has_exactly_the_documented_shape(evaluation: Evaluation, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json(evaluation, path)
    data = json.loads(path.read_text())
    assert data == to_json(evaluation)
    assert set(data) == {"convention", "methods", "luminance"}
    assert data["convention"] == "paper"
    assert data["luminance"] == "bt601"
    assert list(data["methods"]) == ["method", "copy"]
    for method in data["methods"].values():
        assert set(method) == {"mean", "images"}
        assert list(method["mean"]) == ["MI", "CE", "PSNR"]
    copy = data["methods"]["copy"]
    assert copy["images"]["a.png"]["PSNR"] is None
    assert copy["mean"]["PSNR"] is None
    assert copy["images"]["a.png"]["CE"] == 0.0
    method = evaluation.methods["method"]
    assert data["methods"]["method"]["images"]["b.png"]["MI"] == method.images["b.png"]["MI"]


def test_csv_rows(evaluation: Evaluation, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_csv(evaluation, path)
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["convention", "luminance", "method", "image", "MI", "CE", "PSNR"]
    assert [row[:4] for row in rows[1:]] == [
        ["paper", "bt601", "method", "a.png"],
        ["paper", "bt601", "method", "b.png"],
        ["paper", "bt601", "copy", "a.png"],
    ]
    assert float(rows[2][4]) == evaluation.methods["method"].images["b.png"]["MI"]
    assert math.isinf(float(rows[3][6]))


def test_markdown_table(evaluation: Evaluation, tmp_path: Path) -> None:
    table = markdown_table(evaluation, digits=3)
    lines = table.splitlines()
    assert lines[0] == "Metric convention: paper; luminance: bt601."
    assert lines[2] == "| Method | MI ↑ | CE ↓ | PSNR ↑ |"
    assert lines[3] == "|---|---:|---:|---:|"
    mean = evaluation.methods["method"].mean
    assert lines[4] == f"| method | {mean['MI']:.3f} | {mean['CE']:.3f} | {mean['PSNR']:.3f} |"
    assert lines[5].startswith("| copy |")
    path = tmp_path / "report.md"
    write_markdown(evaluation, path, digits=3)
    assert path.read_text() == table


# --- real data --------------------------------------------------------------------------------


def test_evaluate_reference_fnet_output_on_tno() -> None:
    data = shared_path("data", "TNO")
    reference = shared_path("reference", "TNO")
    pairings = pair_methods(data / "ir", data / "vi", {"FNet": reference})
    pairing = pairings["FNet"]
    assert [t.name for t in pairing.triples] == ["19.png"]
    assert len(pairing.unpaired) == 2 * (len(list((data / "ir").iterdir())) - 1)
    result = evaluate(pairings)
    values = result.methods["FNet"].images["19.png"]
    direct = compute_metrics(
        read_gray(reference / "19.png"),
        read_gray(data / "ir" / "19.png"),
        read_gray(data / "vi" / "19.png"),
    ).values
    assert values == direct
    assert result.methods["FNet"].mean == direct
