"""`fnet-deploy explain`: the numbers behind the figures, the files, the page, the command."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.explain import VIEWS, Explanation, explain_images, write_explanation
from fnet_deploy.explain.figures import features_figure, thresholds_figure
from fnet_deploy.explain.trace_maps import BLOCKS, suppressed_share, threshold_histogram
from fnet_deploy.model import FNet, ModelConfig
from fnet_deploy.model.weights import file_sha256
from tests.conftest import random_images, shared_path
from tests.precision import assert_float32_accurate, float32_and_float64_runs

TINY = ModelConfig(filters=4, kernel_size=3, iterations=3)
SHAPE = (24, 32)


def tiny_model(config: ModelConfig = TINY, seed: int = 0) -> FNet:
    torch.manual_seed(seed)
    model = FNet(config)
    with torch.no_grad():  # distinct per-block thresholds, so that a mix-up would show
        for offset, block in enumerate((model.unique_ir, model.unique_vis, model.common)):
            block.b_theta.fill_(-3.0 + 0.5 * offset)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> FNet:
    return tiny_model()


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    return random_images(SHAPE, seed=3)


@pytest.fixture(scope="module")
def explanation(model: FNet, images: tuple[np.ndarray, np.ndarray]) -> Explanation:
    return explain_images(model, *images, top=3, bins=40)


def codes_of(model: FNet, images: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    ir, vis = (torch.from_numpy(image)[None, None] for image in images)
    with torch.no_grad():
        trace = model.trace(ir, vis)
    return {
        "unique_ir": trace.unique_ir[0].numpy(),
        "unique_vis": trace.unique_vis[0].numpy(),
        "common": trace.common[0].numpy(),
    }


def test_energy_map_and_channel_energies_agree_with_the_codes(
    model: FNet, images: tuple[np.ndarray, np.ndarray], explanation: Explanation
) -> None:
    for block, code in codes_of(model, images).items():
        maps = explanation.features[block]
        expected_energy = (code.astype(np.float64) ** 2).mean(axis=(1, 2))
        np.testing.assert_allclose(maps.channel_energy, expected_energy, rtol=1e-6)
        expected_map = (code.astype(np.float64) ** 2).sum(axis=0)
        assert np.argmax(maps.energy_map) == np.argmax(expected_map)
        np.testing.assert_allclose(maps.energy_map, expected_map, rtol=1e-5, atol=1e-12)
        # the energy map's mean is the total of the channel energies
        assert maps.energy_map.mean() == pytest.approx(maps.channel_energy.sum(), rel=1e-5)
        # top channels: the strongest first, none weaker than any channel left out
        top = maps.top_channels
        assert top[0] == np.argmax(maps.channel_energy)
        assert np.all(np.diff(maps.channel_energy[top]) <= 0)
        rest = np.setdiff1d(np.arange(code.shape[0]), top)
        assert maps.channel_energy[top].min() >= maps.channel_energy[rest].max()
        np.testing.assert_array_equal(maps.top_maps, code[top])


def test_thresholds_and_momenta_are_the_model_s(model: FNet, explanation: Explanation) -> None:
    for block in BLOCKS:
        lzsc = getattr(model, block)
        np.testing.assert_allclose(
            explanation.thetas[block], lzsc.thresholds().detach().double().numpy(), rtol=1e-7
        )
        np.testing.assert_allclose(
            explanation.rhos[block], lzsc.momenta().detach().double().numpy(), rtol=1e-7
        )
    assert not np.allclose(explanation.thetas["unique_ir"], explanation.thetas["common"])


def test_reconstructions_sum_to_the_plain_forward_output(
    model: FNet, images: tuple[np.ndarray, np.ndarray], explanation: Explanation
) -> None:
    recs = explanation.reconstructions
    total = recs["rec_ir"] + recs["rec_common"] + recs["rec_vis"]
    # The same three float32 tensors summed in another order: a few ulps of values near 1,
    # no gate in between, so a fixed bound far above 3 ulps holds on any machine.
    np.testing.assert_allclose(total, recs["fused"], atol=1e-5)
    ir, vis = (image[None, None] for image in images)
    forward, reference64 = float32_and_float64_runs(model, ir, vis)
    assert_float32_accurate(recs["fused"], reference64[0, 0], forward[0, 0], "traced forward")


def test_histograms_count_every_entry_and_the_suppressed_share(
    model: FNet, images: tuple[np.ndarray, np.ndarray], explanation: Explanation
) -> None:
    ir, vis = (torch.from_numpy(image)[None, None] for image in images)
    with torch.no_grad():
        trace = model.trace(ir, vis)
    entries = TINY.filters * SHAPE[0] * SHAPE[1]
    for block in BLOCKS:
        hist = explanation.histograms[block]
        last = trace.blocks[block].pre[-1]
        theta = float(getattr(model, block).thresholds().detach()[-1])
        assert hist.step == TINY.iterations
        assert hist.theta == pytest.approx(theta)
        assert hist.pre_counts.sum() == entries
        assert hist.post_counts.sum() == entries
        np.testing.assert_allclose(hist.bin_edges, -hist.bin_edges[::-1])
        assert hist.suppressed_share == pytest.approx(float((last.abs() < theta).float().mean()))
        shares = explanation.suppressed[block]
        assert shares.shape == (TINY.iterations + 1,)
        assert shares[-1] == pytest.approx(hist.suppressed_share)


def test_l1_threshold_zeroes_exactly_the_suppressed_entries() -> None:
    model = tiny_model(ModelConfig(filters=4, kernel_size=3, iterations=2, threshold="l1"))
    ir, vis = (torch.from_numpy(image)[None, None] for image in random_images(SHAPE, seed=5))
    with torch.no_grad():
        trace = model.trace(ir, vis)
    block = trace.blocks["unique_ir"]
    theta = float(block.thetas[-1])
    pre, post = block.pre[-1][0], block.codes[-1][0]
    hist = threshold_histogram(pre, post, theta, step=2, bins=20)
    share = suppressed_share(pre, theta)
    assert 0 < share < 1
    zero_bin = np.searchsorted(hist.bin_edges, 0.0, side="right") - 1
    exact_zeros = int((post == 0).sum())
    assert exact_zeros >= round(share * pre.numel())
    assert hist.post_counts[zero_bin] >= exact_zeros


def test_thresholds_figure_plots_the_model_thresholds(
    model: FNet, explanation: Explanation
) -> None:
    theta_ax = thresholds_figure(explanation).axes[0]
    lines = theta_ax.get_lines()
    assert len(lines) == len(BLOCKS)
    for line, block in zip(lines, BLOCKS, strict=True):
        expected = getattr(model, block).thresholds().detach().numpy()
        np.testing.assert_allclose(np.asarray(line.get_ydata()), expected, rtol=1e-6)


def test_features_figure_shows_the_strongest_channels(explanation: Explanation) -> None:
    figure = features_figure(explanation, "common")
    titles = [ax.get_title() for ax in figure.axes]
    for channel in explanation.features["common"].top_channels:
        assert any(title.startswith(f"z[{channel}]:") for title in titles), titles


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.mark.slow
def test_written_report_is_complete_and_consistent(
    tmp_path: Path, model: FNet, explanation: Explanation
) -> None:
    files = write_explanation(explanation, tmp_path / "out", {"ir": "a.png", "vis": "b.png"})
    pngs = sorted(path.name for path in files.folder.glob("*.png"))
    assert pngs == sorted(view.file for view in VIEWS)
    for name in pngs:
        picture = cv2.imread(str(files.folder / name), cv2.IMREAD_COLOR)
        assert picture is not None and min(picture.shape[:2]) >= 200
        assert picture.std() > 10, f"{name} looks blank"

    page = files.html.read_text(encoding="utf-8")
    assert sorted(image_sources(page)) == pngs
    for view in VIEWS:
        assert escape(view.caption(explanation)) in page
    assert 'href="explain.json"' in page and 'href="arrays.npz"' in page

    record = json.loads(files.json.read_text(encoding="utf-8"))
    arrays = np.load(files.arrays)
    for block in BLOCKS:
        entry = record["thresholds"][block]
        lzsc = getattr(model, block)
        np.testing.assert_allclose(entry["theta"], lzsc.thresholds().detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(entry["rho"], lzsc.momenta().detach().numpy(), atol=1e-7)
        feature = record["features"][block]
        symbol = feature["symbol"]
        energy = arrays[f"energy_{symbol}"]
        row, col = np.unravel_index(np.argmax(energy), energy.shape)
        assert feature["energy_map"]["argmax_row_col"] == [row, col]
        assert energy.mean() == pytest.approx(sum(feature["channel_energy"]), rel=1e-5)
        strongest = arrays[f"channels_{symbol}"][0].astype(np.float64)
        top = feature["top_channels"][0]
        assert top == int(np.argmax(feature["channel_energy"]))
        assert (strongest**2).mean() == pytest.approx(feature["channel_energy"][top], rel=1e-5)
        hist = record["histograms"][block]
        assert len(hist["bin_edges"]) == len(hist["pre_counts"]) + 1
    total = arrays["rec_ir"] + arrays["rec_common"] + arrays["rec_vis"]
    # A reordered sum of three float32 tensors (no gate in between): a few ulps at most.
    np.testing.assert_allclose(total, arrays["fused"], atol=1e-5)
    assert record["reconstructions"]["sum_max_abs_error"] <= 1e-5
    assert record["size_hw"] == list(SHAPE)


def explain_cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["explain", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.slow
def test_explain_command_on_a_real_crop(
    tmp_path: Path, crop_pair: tuple[Path, Path], default_weights: Path, default_model: FNet
) -> None:
    ir, vis = crop_pair
    out = tmp_path / "explained"
    code, output = explain_cli(
        "--ir", ir, "--vis", vis, "--out", out, "--weights", default_weights, "--top", "4"
    )
    assert code == 0, output
    record = json.loads((out / "explain.json").read_text(encoding="utf-8"))
    for block in BLOCKS:
        expected = getattr(default_model, block).thresholds().detach().numpy()
        np.testing.assert_allclose(record["thresholds"][block]["theta"], expected, rtol=1e-6)
        assert len(record["features"][block]["top_channels"]) == 4
    assert record["run"]["weights_sha256"] == file_sha256(default_weights)
    assert sorted(image_sources((out / "index.html").read_text(encoding="utf-8"))) == sorted(
        view.file for view in VIEWS
    )


@pytest.mark.parametrize(
    ("problem", "expected"),
    [("size", "differs from"), ("out-file", "is not a folder"), ("missing", "file not found")],
)
def test_explain_command_reports_bad_input_in_one_line(
    tmp_path: Path, problem: str, expected: str
) -> None:
    ir, vis = tmp_path / "ir.png", tmp_path / "vis.png"
    cv2.imwrite(str(ir), np.zeros((16, 16), np.uint8))
    cv2.imwrite(str(vis), np.zeros((16, 20 if problem == "size" else 16), np.uint8))
    out = tmp_path / "out"
    if problem == "out-file":
        out.write_text("not a folder")
    if problem == "missing":
        ir = tmp_path / "nothing.png"
    code, output = explain_cli("--ir", ir, "--vis", vis, "--out", out)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], output


@pytest.mark.slow
def test_real_pair_thresholds_fall_and_fused_matches_the_authors_output(
    official_model: FNet,
) -> None:
    data = shared_path("data", "TNO")
    ir = cv2.imread(str(data / "ir" / "19.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    vis = cv2.imread(str(data / "vi" / "19.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    explanation = explain_images(official_model, ir, vis)
    for block in BLOCKS:
        assert np.all(np.diff(explanation.thetas[block]) < 0), "thresholds fall with k"
    reference = cv2.imread(str(shared_path("reference", "TNO", "19.png")), cv2.IMREAD_GRAYSCALE)
    fused = np.rint(np.clip(explanation.reconstructions["fused"], 0, 1) * 255)
    assert np.abs(fused - reference).max() <= 1
    # IR-unique energy peaks where the IR image is hot (the person), not in the visible image
    row, col = np.unravel_index(np.argmax(explanation.features["unique_ir"].energy_map), ir.shape)
    assert ir[row, col] > np.percentile(ir, 99)
