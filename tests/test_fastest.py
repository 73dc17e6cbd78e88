"""The fastest exact form by default: the cached ONNX deploy form on a CPU, the PyTorch deploy
form without ONNX Runtime; the cache's reuse and rebuilds; exactness against the training form."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.backends.torch_runner import TorchRunner
from fnet_deploy.cli import app
from fnet_deploy.export import onnx_cache
from fnet_deploy.export.onnx_graph import read_metadata
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.inference.images import FuseOptions, ImageFuser
from fnet_deploy.inference.select import fastest_runner
from fnet_deploy.model import FNet, ModelConfig, load_fnet, save_fnet
from fnet_deploy.model.deploy import DeployFNet
from tests.conftest import TINY, fixture_pair, fixture_path, nato
from tests.precision import assert_float32_accurate, float32_and_float64_runs

EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """A cache folder of this test's own, and the list of exports made into it.

    An export that repeats an earlier one (same cache key) returns a copy of the earlier graph
    instead of running the exporter again (4 s each, whatever the model's size).
    """
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(tmp_path / "cache"))
    made: list[Path] = []
    built: dict[str, onnx.ModelProto] = {}
    build = onnx_cache.build_onnx

    def counting_build(
        model: FNet, spec: onnx_cache.OnnxSpec, metadata: dict[str, str]
    ) -> onnx.ModelProto:
        key = metadata["fnet_deploy.cache_key"]
        made.append(onnx_cache.cached_path(metadata["fnet_deploy.weights_sha256"], spec))
        if key not in built:
            built[key] = build(model, spec, metadata)
        copy = onnx.ModelProto()
        copy.CopyFrom(built[key])
        return copy

    monkeypatch.setattr(onnx_cache, "build_onnx", counting_build)
    return made


def assert_torch_deploy_form(runner: Runner) -> None:
    assert isinstance(runner, TorchRunner) and runner.form == "deploy"
    with runner:
        assert isinstance(runner.model, DeployFNet)


def activated(weights: Path, notify: Callable[[str], None] | None = None) -> OnnxRunner:
    """The default CPU runner of ``weights``, activated once (which exports if need be)."""
    runner, _ = fastest_runner(weights, notify=notify)
    assert isinstance(runner, OnnxRunner)
    with runner:
        assert runner.providers == ["CPUExecutionProvider"]
    return runner


def seeded_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_fnet(path, FNet(TINY))
    return path


def test_default_on_cpu_is_the_cached_onnx_col2im_deploy_form(
    tiny_weights: Path, onnx_cache: Path
) -> None:
    runner, info = fastest_runner(tiny_weights)
    assert isinstance(runner, OnnxRunner) and runner.device == "cpu"
    assert runner.model_path.parent == onnx_cache  # the session's cache, not ~/.cache
    with runner:  # exported (if no other test did it first) on activation
        assert runner.providers == ["CPUExecutionProvider"]
    metadata = read_metadata(runner.model_path)
    assert metadata["weights_sha256"] == info.sha256
    assert json.loads(metadata["deploy_options"]) == {
        "merge_encoders": False,
        "col2im": True,
        "exp_gate": True,
    }
    operators = {node.op_type for node in onnx.load(str(runner.model_path)).graph.node}
    assert "Col2Im" in operators and "Exp" in operators and "Sigmoid" not in operators


def test_cuda_and_fp16_use_the_torch_deploy_form(tiny_weights: Path) -> None:
    runner, _ = fastest_runner(tiny_weights, "cuda:0", "fp16")  # built, not activated
    assert isinstance(runner, TorchRunner)
    assert (runner.form, runner.device.type, runner.precision) == ("deploy", "cuda", "fp16")


@pytest.mark.parametrize("hidden", EXPORT_PACKAGES)
def test_without_an_export_package_it_falls_back_to_the_torch_deploy_form(
    hidden: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # `import <hidden>` now fails
    said: list[str] = []
    runner, _ = fastest_runner(tiny_weights, notify=said.append)
    assert len(said) == 1 and hidden in said[0] and "PyTorch deploy form" in said[0]
    assert_torch_deploy_form(runner)


def test_fuse_without_onnxruntime_fuses_with_one_info_line(
    tmp_path: Path,
    crop_pair: tuple[Path, Path],
    tiny_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    ir, vis = crop_pair
    out = tmp_path / "fused.png"
    args = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    info, _, done = " ".join(result.output.split()).partition(" fused ")
    assert info.startswith("running the PyTorch deploy form;") and "onnxruntime" in info
    assert "pip install 'fnet-deploy[onnx]'" in info  # printed as text, not as rich markup
    assert done.startswith(f"{ir.name} + {vis.name}") and "Traceback" not in result.output
    assert cv2.imread(str(out)).shape[:2] == (64, 80)


def test_the_cache_is_reused_and_rebuilt_when_weights_change_or_it_is_corrupt(
    tmp_path: Path, exports: list[Path]
) -> None:
    weights = seeded_weights(tmp_path / "w.safetensors", 1)
    said: list[str] = []
    first = activated(weights, said.append)
    assert exports == [first.model_path]
    assert len(said) == 1 and "exporting w.safetensors" in said[0]
    cached, inode = first.model_path, first.model_path.stat().st_ino  # atomic writes: new inode

    again = activated(weights, said.append)
    assert again.model_path == cached
    assert len(exports) == 1 and len(said) == 1 and cached.stat().st_ino == inode

    seeded_weights(weights, 2)  # new weights under the same name: a new key, a new export
    changed = activated(weights)
    assert changed.model_path != cached and len(exports) == 2

    data = cached.read_bytes()
    seeded_weights(weights, 1)
    sha = load_fnet(weights)[1].sha256
    for broken in (b"not a model", data[: len(data) // 2]):
        cached.write_bytes(broken)
        assert activated(weights).model_path == cached
        assert onnx_cache.is_current(cached, onnx_cache.cache_key(sha, onnx_cache.CPU_SPEC))
    assert len(exports) == 4

    cached.write_bytes(changed.model_path.read_bytes())  # a valid model recording another key
    activated(weights)
    assert len(exports) == 5
    assert read_metadata(cached)["weights_sha256"] == sha


def test_an_unwritable_cache_falls_back_to_the_torch_deploy_form(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv(onnx_cache.CACHE_ENV, str(blocker / "cache"))
    said: list[str] = []
    runner, _ = fastest_runner(tiny_weights, notify=said.append)
    assert len(said) == 1 and "cannot be cached" in said[0] and str(blocker) in said[0]
    assert_torch_deploy_form(runner)


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(onnx_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert onnx_cache.cache_dir() == Path("/xdg/fnet-deploy")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert onnx_cache.cache_dir() == Path("/home/someone/.cache/fnet-deploy")


def both_default_forms(weights: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Runner]:
    """The runner chosen by default with ONNX Runtime, and the one chosen without it."""
    ort_runner, _ = fastest_runner(weights)
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "onnxruntime", None)
        torch_runner, _ = fastest_runner(weights)
    assert isinstance(ort_runner, OnnxRunner) and isinstance(torch_runner, TorchRunner)
    return {"onnx deploy form (col2im)": ort_runner, "torch deploy form": torch_runner}


def test_the_cache_keeps_the_recently_used_and_drops_the_rest(tmp_path: Path) -> None:
    day = 86400.0
    now = 1_000 * day
    entries = []
    for age in range(12):  # fnet-00.onnx used just now ... fnet-11.onnx 11 days ago
        entry = tmp_path / f"fnet-{age:02d}.onnx"
        entry.write_bytes(b"model")
        os.utime(entry, (now - age * day, now - age * day))
        entries.append(entry)
    old = tmp_path / "fnet-old.onnx"
    old.write_bytes(b"model")
    os.utime(old, (now - 40 * day, now - 40 * day))
    other = tmp_path / "notes.txt"
    other.write_text("not a cached model")
    keep = entries[10]  # the one just exported is kept whatever its time
    removed = onnx_cache.prune(keep, now=now)
    assert sorted(removed) == sorted([*entries[8:10], entries[11], old])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*(e.name for e in entries[:8]), keep.name, "notes.txt"])


@pytest.mark.parametrize("config", [TINY, ModelConfig(filters=6, kernel_size=5, iterations=3)])
def test_default_forms_match_the_training_form_against_float64(
    config: ModelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(5)
    weights = tmp_path / "w.safetensors"
    save_fnet(weights, FNet(config))
    ir, vis = (nato(m)[120:168, 150:214].astype(np.float32)[None, None] / 255 for m in ("ir", "vi"))
    out32, ref64 = float32_and_float64_runs(load_fnet(weights)[0], ir, vis)
    for what, runner in both_default_forms(weights, monkeypatch).items():
        with runner as active:
            fused = active.infer({"ir": ir, "vis": vis})["fused"]
        assert_float32_accurate(fused, ref64, out32, what)


def test_trained_weights_by_default_match_the_training_form_on_a_dark_crop(
    default_weights: Path, default_model: FNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Black background and skull edge of MRI_CT 11 (48 x 64): gates near their thresholds.
    crop = np.s_[100:148, 0:64]
    ir, vis = (
        cv2.imread(str(fixture_path("MRI_CT", m, "11.png")), cv2.IMREAD_GRAYSCALE)[crop].astype(
            np.float32
        )[None, None]
        / 255
        for m in ("MRI", "CT")
    )
    out32, ref64 = float32_and_float64_runs(default_model, ir, vis)
    for what, runner in both_default_forms(default_weights, monkeypatch).items():
        with runner as active:
            fused = active.infer({"ir": ir, "vis": vis})["fused"]
        assert_float32_accurate(fused, ref64, out32, what)


@pytest.mark.parametrize(
    ("dataset", "name"), [("TNO", "20.png"), ("MSRS_train", "00001D.png"), ("MRI_CT", "11.png")]
)
def test_default_forms_are_within_one_grey_level_of_the_training_form_on_real_images(
    dataset: str,
    name: str,
    default_weights: Path,
    default_model: FNet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if dataset == "MRI_CT":
        ir_path, vis_path = fixture_path("MRI_CT", "MRI", name), fixture_path("MRI_CT", "CT", name)
    else:
        ir_path, vis_path = fixture_pair(dataset, name)
    cpu, options = torch.device("cpu"), FuseOptions()
    with TorchRunner(default_model) as training:
        expected = ImageFuser(training, default_model.config, cpu, options).fuse_files(
            ir_path, vis_path
        )
    for what, runner in both_default_forms(default_weights, monkeypatch).items():
        with runner as active:
            got = ImageFuser(active, default_model.config, cpu, options).fuse_files(
                ir_path, vis_path
            )
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 1, f"{what}: {diff.max()} grey levels from the training form"


def test_a_bad_image_is_refused_before_any_export(
    tmp_path: Path, tiny_weights: Path, exports: list[Path]
) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    vis = fixture_pair("TNO", "20.png")[1]
    args = ["fuse", "--ir", str(empty), "--vis", str(vis), "--weights", str(tiny_weights)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and "empty.png: empty file" in result.output
    assert exports == [] and "exporting" not in result.output


def test_an_export_failure_is_one_error(
    tiny_weights: Path, exports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> onnx.ModelProto:
        raise RuntimeError("exporter exploded\nwith a long story")

    monkeypatch.setattr(onnx_cache, "build_onnx", broken)
    runner, _ = fastest_runner(tiny_weights)
    with pytest.raises(FnetError, match=r"tiny\.safetensors: exporting to ONNX .* exploded\)$"):
        runner.activate()
