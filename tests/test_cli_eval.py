"""`fnet-deploy eval` as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.metrics import compute_metrics, report
from fnet_deploy.metrics.baselines import average
from fnet_deploy.metrics.report import read_gray
from tests.conftest import fixture_path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Three real TNO pairs cropped to 48 x 64, plus one IR file without a partner."""
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    for name in ("19", "20", "21"):
        for sub in ("ir", "vi"):
            image = cv2.imread(str(fixture_path("TNO", sub, f"{name}.png")))
            cv2.imwrite(str(tmp_path / sub / f"{name}.png"), image[:48, :64])
    cv2.imwrite(str(tmp_path / "ir" / "lonely.png"), image[:8, :8])
    return tmp_path


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *map(str, args)])
    return result.exit_code, result.output


def test_baselines_and_fnet_side_by_side(dataset: Path, default_weights: Path) -> None:
    out = dataset / "results"
    code, output = invoke(
        "--ir",
        dataset / "ir",
        "--vis",
        dataset / "vi",
        "--out",
        out,
        "--weights",
        default_weights,
        "--baseline",
        "average",
        "--baseline",
        "max",
    )
    assert code == 0, output
    assert "lonely" in output
    document = json.loads((out / "results.json").read_text())
    assert document["convention"] == "paper"
    assert list(document["methods"]) == ["fnet", "average", "max"]
    for method in document["methods"].values():
        assert set(method["images"]) == {"19.png", "20.png", "21.png"}
        assert method["ms_per_frame"] > 0
        assert set(method["mean"]) >= {"MI", "VIF", "Qabf", "SSIM", "EN"}
    # the stored per-image numbers are the metrics of the written fused image
    fused = read_gray(out / "fused" / "average" / "20.png")
    ir, vis = read_gray(dataset / "ir" / "20.png"), read_gray(dataset / "vi" / "20.png")
    expected = compute_metrics(fused, ir, vis, "paper").values
    assert document["methods"]["average"]["images"]["20.png"]["MI"] == pytest.approx(expected["MI"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 9 and {r["method"] for r in rows} == {"fnet", "average", "max"}
    markdown = (out / "results.md").read_text()
    assert "| fnet |" in markdown and "| max |" in markdown


def test_precomputed_results_folder(dataset: Path) -> None:
    mine = dataset / "mine"
    mine.mkdir()
    for name in ("19", "20"):
        ir = cv2.imread(str(dataset / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) / 255.0
        vis = cv2.imread(str(dataset / "vi" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) / 255.0
        cv2.imwrite(str(mine / f"{name}.png"), (average(ir, vis) * 255).round().astype("uint8"))
    code, output = invoke(
        "--ir",
        dataset / "ir",
        "--vis",
        dataset / "vi",
        "--fused",
        f"avg={mine}",
        "--out",
        dataset / "r",
        "--convention",
        "standard",
        "--plot",
    )
    assert code == 0, output
    assert "21" in output  # the source pair without a fused image is named
    document = json.loads((dataset / "r" / "results.json").read_text())
    assert document["convention"] == "standard"
    assert set(document["methods"]["avg"]["images"]) == {"19.png", "20.png"}
    plot = cv2.imread(str(dataset / "r" / "results.png"))
    assert plot is not None and plot.shape[0] > 100 and plot.std() > 10


def test_size_mismatch_is_one_clear_line(dataset: Path) -> None:
    bad = dataset / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "19.png"), cv2.imread(str(dataset / "ir" / "19.png"))[:20, :20])
    code, output = invoke(
        "--ir", dataset / "ir", "--vis", dataset / "vi", "--fused", bad, "--out", dataset / "r"
    )
    assert code == 2
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "19.png" in errors[0]


def test_nothing_to_evaluate(dataset: Path) -> None:
    code, output = invoke("--ir", dataset / "ir", "--vis", dataset / "vi")
    assert code == 2 and "nothing to evaluate" in output


def test_a_method_name_used_twice_is_refused(dataset: Path) -> None:
    pairs = ["--ir", str(dataset / "ir"), "--vis", str(dataset / "vi")]
    code, output = invoke(*pairs, "--fused", f"average={dataset / 'vi'}", "--baseline", "average")
    assert code == 2 and "method name 'average' given twice" in output
    code, output = invoke(*pairs, "--baseline", "max", "--baseline", "max")
    assert code == 2 and "method name 'max' given twice" in output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_eval_keeps_the_images_it_finished(
    dataset: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    # The signal arrives while the metrics of the second image (of three) are computed.
    computed: list[int] = []

    def compute_then_signal(*args: object, **kwargs: object) -> object:
        computed.append(1)
        if len(computed) == 2:
            os.kill(os.getpid(), signum)
        return compute_metrics(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(report, "compute_metrics", compute_then_signal)
    out = dataset / "r"
    pairs = ("--ir", str(dataset / "ir"), "--vis", str(dataset / "vi"))
    result = CliRunner().invoke(app, ["eval", *pairs, "--baseline", "average", "--out", str(out)])
    assert result.exit_code == 128 + signum, result.output
    assert "interrupted" in result.stderr and "1 of 3 images" in result.stderr
    document = json.loads((out / "results.json").read_text())
    stopped_by = signal.Signals(signum).name
    assert document["partial"] == {"stopped_by": stopped_by, "images": 1, "of": 3}
    assert list(document["methods"]["average"]["images"]) == ["19.png"]
    with (out / "results.csv").open() as handle:
        assert [row["image"] for row in csv.DictReader(handle)] == ["19.png"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are restored
