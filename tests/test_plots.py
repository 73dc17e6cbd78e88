"""Plots of evaluation results, training logs and latencies: what they draw, and the files."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib.container import BarContainer

from fnet_deploy.bench.plots import latency_figure, plot_latency
from fnet_deploy.helpers.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.metrics.plots import metric_bars_figure, plot_metric_bars
from fnet_deploy.training.plots import loss_curves_figure, plot_loss_curves, read_loss_log


def report(convention: str, values: dict[str, dict[str, list[float]]]) -> dict:
    """An evaluation report with per-image values and their means."""
    methods = {}
    for method, metrics in values.items():
        count = len(next(iter(metrics.values())))
        images = {f"{i}.png": {m: v[i] for m, v in metrics.items()} for i in range(count)}
        means = {m: float(np.mean(v)) for m, v in metrics.items()}
        methods[method] = {"mean": means, "images": images}
    return {"convention": convention, "methods": methods}


EVALUATIONS = {
    "TNO": report(
        "paper",
        {"FNet": {"MI": [2.0, 3.0], "CE": [1.0, 1.2]}, "other": {"MI": [1.0, 1.5], "CE": [2, 2]}},
    ),
    "RoadScene": report(
        "paper",
        {"FNet": {"MI": [4.0, 4.0], "CE": [0.5, 0.7]}, "other": {"MI": [2.5, 3.5], "CE": [1, 3]}},
    ),
}


def png_is_a_picture(path: Path) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable PNG"
    assert min(image.shape[:2]) > 100 and image.std() > 10


def test_metric_bars_show_each_method_mean_per_dataset(tmp_path: Path) -> None:
    figure = metric_bars_figure(EVALUATIONS)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["MI (higher is better)", "CE (lower is better)"]
    mi = panels[0]
    assert [t.get_text() for t in mi.get_xticklabels()] == ["TNO", "RoadScene"]
    bars = [c for c in mi.containers if isinstance(c, BarContainer)]
    heights = {c.get_label(): [bar.get_height() for bar in c] for c in bars}
    assert heights["FNet"] == pytest.approx([2.5, 4.0])
    assert heights["other"] == pytest.approx([1.25, 3.0])
    assert "convention: paper" in figure.get_suptitle()
    out = plot_metric_bars(EVALUATIONS, tmp_path / "bars.png", metrics=["CE"])
    assert out == tmp_path / "bars.png"
    png_is_a_picture(out)


def test_metric_bars_reject_results_without_methods() -> None:
    with pytest.raises(FnetError, match="RoadScene"):
        metric_bars_figure({"TNO": EVALUATIONS["TNO"], "RoadScene": {"convention": "paper"}})
    with pytest.raises(FnetError, match="SSIM"):
        metric_bars_figure(EVALUATIONS, metrics=["SSIM"])


def write_log(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_loss_log_keeps_numeric_columns_and_stages(tmp_path: Path) -> None:
    log = read_loss_log(
        write_log(
            tmp_path / "log.csv",
            "step,stage,loss,ssim,note\n0,I,2.0,,warmup\n10,I,1.0,,x\n20,II,0.5,0.3,y\n",
        )
    )
    np.testing.assert_array_equal(log.steps, [0, 10, 20])
    assert log.stages == ["I", "I", "II"]
    assert list(log.columns) == ["loss", "ssim"]
    np.testing.assert_array_equal(log.columns["loss"], [2.0, 1.0, 0.5])
    assert np.isnan(log.columns["ssim"][:2]).all() and log.columns["ssim"][2] == 0.3


def test_loss_curves_draw_every_stage_against_step(tmp_path: Path) -> None:
    rows = ["step,stage,loss"]
    rows += [f"{s},I,{2.0 / (1 + s)}" for s in range(0, 100)]
    rows += [f"{s},II,{1.0 / (1 + s)}" for s in range(100, 130)]
    path = write_log(tmp_path / "train.csv", "\n".join(rows) + "\n")
    figure = loss_curves_figure(read_loss_log(path))
    ax = figure.axes[0]
    assert ax.get_title() == "loss" and ax.get_yscale() == "log"
    labelled = {line.get_label(): line for line in ax.get_lines() if line.get_label()[0] != "_"}
    assert set(labelled) == {"stage I", "stage II"}
    np.testing.assert_array_equal(labelled["stage II"].get_xdata(), np.arange(100, 130))
    np.testing.assert_allclose(labelled["stage II"].get_ydata(), 1.0 / np.arange(101, 131))
    png_is_a_picture(plot_loss_curves(path, tmp_path / "loss.png"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("epoch,loss\n1,2\n", "no 'step' column"),
        ("step,loss\n", "no rows"),
        ("step,note\n1,a\n", "no numeric columns"),
        ("step,loss\nfirst,1\n", "not a number"),
    ],
)
def test_bad_loss_logs_name_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write_log(tmp_path / "bad.csv", text)
    with pytest.raises(InputError, match=problem) as err:
        read_loss_log(path)
    assert err.value.path == path
    with pytest.raises(InputError, match="file not found"):
        read_loss_log(tmp_path / "missing.csv")


def test_latency_plot_summarises_each_backend(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    latencies = {"torch": rng.normal(100, 5, 200).tolist(), "onnxruntime": [40.0, 41.0, 42.0]}
    figure = latency_figure(latencies)
    box_ax, hist_ax = figure.axes[:2]
    labels = [text.get_text() for text in hist_ax.get_legend().get_texts()]
    assert labels[1] == "onnxruntime: median 41 ms, p95 41.9 ms, n=3"
    assert labels[0].startswith(f"torch: median {np.median(latencies['torch']):.4g} ms")
    # box plot: first backend on top
    assert [t.get_text() for t in box_ax.get_yticklabels()] == ["onnxruntime", "torch"]
    png_is_a_picture(plot_latency(latencies, tmp_path / "latency.png"))


def test_latency_plot_rejects_empty_or_invalid_samples() -> None:
    with pytest.raises(FnetError, match="trt"):
        latency_figure({"trt": []})
    with pytest.raises(FnetError, match="trt"):
        latency_figure({"trt": [1.0, float("nan")]})


def test_missing_matplotlib_names_the_plot_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"fnet-deploy\[plot\]"):
        plot_latency({"torch": [1.0]}, tmp_path / "latency.png")
    assert not (tmp_path / "latency.png").exists()


def test_written_files_are_replaced_atomically(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "latency.png"
    plot_latency({"torch": [1.0, 2.0, 3.0]}, out)
    first = out.read_bytes()
    plot_latency({"torch": [10.0, 20.0, 30.0]}, out)
    assert out.read_bytes() != first
    assert [p.name for p in out.parent.iterdir()] == ["latency.png"]
