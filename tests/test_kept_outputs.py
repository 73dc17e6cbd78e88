"""A write that fails late keeps the results elsewhere and says where, in one line, exit 1.

Output locations are checked before any work starts; these tests break them during the run, on
the real command path (the CLI in process): the output folder is replaced by a regular file
while the command computes (what removing or replacing it does; permissions would not stop root),
or the disk "fills" (the command's writer raises ENOSPC for the place asked for). The results
must then be complete in ``fnet-deploy-<command>-*`` under the temporary folder, named in the
error line. The runs of ``export`` and ``explain``, seconds long even for a tiny model, also
check their plain progress lines (the CLI runner is no terminal; see ``tests/test_progress.py``).
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.cli import app
from fnet_deploy.commands.common import PROGRESS_ENV
from fnet_deploy.model import FNet, ModelConfig, save_fnet
from fnet_deploy.runtime.registration import Registration
from tests.conftest import NATO


@pytest.fixture
def fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the kept results go to (the test's own)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Two real pairs: 48 x 48 crops of the Nato camp frames 4 and 5."""
    for number in (4, 5):
        for modality in ("ir", "vi"):
            frame = cv2.imread(str(NATO / modality / f"{number:06d}.png"), cv2.IMREAD_GRAYSCALE)
            (tmp_path / "pairs" / modality).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(tmp_path / "pairs" / modality / f"{number}.png"), frame[100:148, 150:198]
            )
    return tmp_path / "pairs"


def block(folder: Path) -> None:
    """Replace ``folder`` (and what it holds) by a regular file of that name."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder any more\n")


def then(original: Callable[..., Any], after: Callable[[], None]) -> Callable[..., Any]:
    """``original``, then ``after()`` (the sabotage, once the work is done)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        after()
        return result

    return wrapped


def full_disk(writer: Callable[..., Any], under: Path) -> Callable[..., Any]:
    """``writer(path, ...)``, but ENOSPC for any path under ``under``."""

    def write(path: Path, *args: Any, **kwargs: Any) -> Any:
        if Path(path).is_relative_to(under):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return writer(path, *args, **kwargs)

    return write


def kept_line(result: Any, failed: Path, problem: str) -> Path:
    """The one error line of a run whose output was kept: exit 1, names the failed place and
    its problem; returns where it says the results are."""
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert str(failed) in errors[0] and problem in errors[0], errors[0]
    match = re.search(r"kept in (\S+)$", errors[0])
    assert match, errors[0]
    return Path(match.group(1))


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_fuse_keeps_the_fused_image(
    tmp_path: Path,
    fallback: Path,
    pairs: Path,
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = ("--ir", pairs / "ir" / "5.png", "--vis", pairs / "vi" / "5.png")
    expected = tmp_path / "expected.png"
    model = ("--weights", tiny_weights, "--backend", "torch")
    assert run("fuse", *pair, *model, "--out", expected).exit_code == 0
    out = tmp_path / "out" / "fused.png"
    from fnet_deploy.inference.images import ImageFuser

    blocked = then(ImageFuser.fuse_read, lambda: block(out.parent))
    monkeypatch.setattr(ImageFuser, "fuse_read", blocked)
    result = run("fuse", *pair, *model, "--out", out)
    kept = kept_line(result, out, "is a file, not a folder")
    assert kept.parent.parent == fallback and kept.name == "fused.png"
    assert kept.read_bytes() == expected.read_bytes()


def test_fuse_folders_move_to_the_kept_folder_with_what_was_written(
    tmp_path: Path,
    fallback: Path,
    pairs: Path,
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fnet_deploy.commands import fuse

    out = tmp_path / "fused"
    writer = fuse.write_image
    calls: list[Path] = []

    def fills_after_one(path: Path, image: np.ndarray) -> None:
        calls.append(Path(path))
        (writer if len(calls) == 1 else full_disk(writer, out))(path, image)

    monkeypatch.setattr(fuse, "write_image", fills_after_one)
    folders = ("--ir", pairs / "ir", "--vis", pairs / "vi")
    result = run("fuse", *folders, "--weights", tiny_weights, "--backend", "torch", "--out", out)
    kept = kept_line(result, out / "5.png", "no space left on device")
    assert kept == next(fallback.iterdir()) / "fused"
    assert sorted(p.name for p in kept.iterdir()) == ["4.png", "5.png"]
    assert (kept / "4.png").read_bytes() == (out / "4.png").read_bytes()
    assert cv2.imread(str(kept / "5.png")).shape == (48, 48, 3)


def test_eval_keeps_results_and_fused_images(
    tmp_path: Path, fallback: Path, pairs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fnet_deploy.evaluation import run as evaluation

    out = tmp_path / "ev"
    monkeypatch.setattr(
        evaluation,
        "write_text_atomic",
        full_disk(evaluation.write_text_atomic, out / "results.json"),
    )
    folders = ("--ir", pairs / "ir", "--vis", pairs / "vi")
    result = run("eval", *folders, "--baseline", "average", "--out", out)
    kept = kept_line(result, out / "results.json", "no space left on device")
    assert kept.parent == next(fallback.iterdir()) and kept.name == "ev"
    document = json.loads((kept / "results.json").read_text())
    assert set(document["methods"]["average"]["images"]) == {"4.png", "5.png"}
    assert (kept / "results.csv").is_file() and (kept / "results.md").is_file()
    assert sorted(p.name for p in (kept / "fused" / "average").iterdir()) == ["4.png", "5.png"]
    assert not (out / "results.json").exists()


def test_bench_keeps_the_json(
    tmp_path: Path, fallback: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fnet_deploy.bench import matrix  # bench imports run_cell from it when it runs

    out = tmp_path / "o" / "bench.json"
    monkeypatch.setattr(matrix, "run_cell", then(matrix.run_cell, lambda: block(out.parent)))
    result = run(
        "bench", "--no-peaks", "--backend", "torch", "--size", "16x16", "--iterations", "1",
        "--warmup", "0", "--json", out,
    )  # fmt: skip
    kept = kept_line(result, out, "is a file, not a folder")
    assert kept.parent.parent == fallback
    assert json.loads(kept.read_text())["results"][0]["backend"] == "torch"


def test_stream_keeps_the_statistics(
    tmp_path: Path,
    fallback: Path,
    pairs: Path,
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fnet_deploy.runtime.pipeline import StreamPipeline

    stats = tmp_path / "o" / "stats.json"
    pipeline = StreamPipeline
    monkeypatch.setattr(pipeline, "run", then(pipeline.run, lambda: block(stats.parent)))
    result = run(
        "stream", "--backend", "torch", "--weights", tiny_weights, "--no-live",
        "--vis", f"dir://{pairs / 'vi'}", "--ir", f"dir://{pairs / 'ir'}",
        "--out", tmp_path / "s.mp4", "--stats", stats,
    )  # fmt: skip
    kept = kept_line(result, stats, "is a file, not a folder")
    assert kept.parent.parent == fallback
    document = json.loads(kept.read_text())
    assert document["frames"]["written"] == 2 and document["stopped_by"] == "end of input"
    assert (tmp_path / "s.mp4").is_file()


def test_calibrate_keeps_the_calibration(
    tmp_path: Path, fallback: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fnet_deploy.commands import calibrate

    out = tmp_path / "o" / "registration.json"
    estimate = then(calibrate.estimate_from_images, lambda: block(out.parent))
    monkeypatch.setattr(calibrate, "estimate_from_images", estimate)
    frames = ("--ir", NATO / "ir" / "000005.png", "--vis", NATO / "vi" / "000005.png")
    result = run("calibrate", *frames, "--transform", "translation", "--out", out)
    kept = kept_line(result, out, "is a file, not a folder")
    assert kept.parent.parent == fallback
    assert Registration.load(kept).matrix.shape == (3, 3)


def test_explain_keeps_the_views_and_reports_progress(
    tmp_path: Path,
    fallback: Path,
    pairs: Path,
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fnet_deploy.explain

    monkeypatch.setenv(PROGRESS_ENV, "0.05")
    out = tmp_path / "o" / "explain"
    traced = then(fnet_deploy.explain.explain_images, lambda: block(out.parent))
    monkeypatch.setattr(fnet_deploy.explain, "explain_images", traced)
    pair = ("--ir", pairs / "ir" / "5.png", "--vis", pairs / "vi" / "5.png")
    result = run("explain", *pair, "--weights", tiny_weights, "--top", "1", "--out", out)
    kept = kept_line(result, out, "is a file, not a folder")
    assert kept.parent.parent == fallback and kept.name == "explain"
    assert json.loads((kept / "explain.json").read_text())["run"]["weights"] == str(tiny_weights)
    assert (kept / "index.html").is_file() and (kept / "arrays.npz").is_file()
    assert "explain: drawing the views" in result.stderr.splitlines()


def test_export_keeps_the_model_checks_it_there_and_reports_progress(
    tmp_path: Path, fallback: Path, pairs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fnet_deploy.export import onnx_graph

    torch.manual_seed(0)
    tiny_weights = tmp_path / "smallest.safetensors"  # the smallest graph: the quickest export
    save_fnet(tiny_weights, FNet(ModelConfig(filters=2, kernel_size=3, iterations=1)))
    monkeypatch.setenv(PROGRESS_ENV, "0.05")
    out = tmp_path / "o" / "exported"
    monkeypatch.setattr(
        onnx_graph, "build_onnx", then(onnx_graph.build_onnx, lambda: block(out.parent))
    )
    pair = ("--ir", pairs / "ir" / "5.png", "--vis", pairs / "vi" / "5.png")
    result = run("export", *pair, "--weights", tiny_weights, "--out", out)
    kept = kept_line(result, out / "fnet.onnx", "is a file, not a folder")
    assert kept.parent.parent == fallback and kept.name == "fnet.onnx"
    assert onnx_graph.read_metadata(kept)["weights_file"] == tiny_weights.name
    lines = result.stderr.splitlines()
    assert f"wrote {kept}" in result.output and "PASS" in result.output
    assert "export: exporting fnet.onnx" in lines
    assert any(re.fullmatch(r"export: exporting fnet\.onnx \(\d+ s\)", line) for line in lines)
