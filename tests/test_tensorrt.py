"""TensorRT: profiles, the engine sidecar and its compatibility check, calibration batches;
engine build and inference on a GPU (skipped, with the reason, where TensorRT or a GPU is
absent)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.engine_info import (
    EngineInfo,
    ShapeProfile,
    compatibility_problems,
    parse_shape,
    read_sidecar,
    rebuild_command,
    sidecar_path,
    write_sidecar,
)
from fnet_deploy.backends.tensorrt_runner import TensorRTRunner
from fnet_deploy.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.export.parity import ErrorStats, ImagePair, read_pair
from fnet_deploy.export.tensorrt_build import calibration_batches, calibration_key
from fnet_deploy.model import FNet
from fnet_deploy.model.weights import file_sha256
from tests.conftest import shared_path

PROFILE = ShapeProfile((1, 1, 16, 16), (1, 1, 64, 64), (2, 1, 128, 128))


def gpu_skip_reason() -> str | None:
    """Why the GPU tests cannot run here, or ``None`` when they can."""
    for module, package in (("tensorrt", "tensorrt"), ("cuda", "cuda-python")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install 'fnet-deploy[tensorrt]')"
    from fnet_deploy.backends.cuda_buffers import device_count

    try:
        count = device_count()
    except FnetError as err:
        return str(err)
    return "no CUDA GPU on this machine" if count == 0 else None


SKIP_REASON = gpu_skip_reason()
needs_gpu = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def sample_info(**changes: object) -> EngineInfo:
    info = EngineInfo(
        tensorrt_version="10.3.0",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
        precision="fp16",
        profile=PROFILE.to_dict(),
        onnx_file="fnet_fp16.onnx",
        onnx_sha256="ab" * 32,
        workspace_mib=2048,
        package_version="0.1.0",
        weights_file="FNet_official.pth",
    )
    return dataclasses.replace(info, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shape"),
    [("1x1x480x640", (1, 1, 480, 640)), ("480x640", (1, 1, 480, 640)), ("4X1X8X9", (4, 1, 8, 9))],
)
def test_parse_shape(text: str, shape: tuple[int, ...]) -> None:
    assert parse_shape(text, "--opt-shape") == shape


@pytest.mark.parametrize("text", ["480", "1x3x480x640", "0x1x4x4", "axb", "1x1x2x2x2"])
def test_parse_shape_rejects_bad_text(text: str) -> None:
    with pytest.raises(FnetError, match="--min-shape"):
        parse_shape(text, "--min-shape")


def test_profile_order_fit_and_conflicts_with_fixed_dimensions() -> None:
    with pytest.raises(FnetError, match="min <= opt <= max"):
        ShapeProfile.parse("1x1x64x64", "1x1x32x64", "1x1x128x128")
    assert PROFILE.fits((2, 1, 100, 16)) and not PROFILE.fits((1, 1, 8, 64))
    assert PROFILE.conflicts(["batch", 1, "height", "width"]) == []
    fixed = ShapeProfile((1, 1, 480, 640), (1, 1, 480, 640), (1, 1, 480, 640))
    assert fixed.conflicts([1, 1, 480, 640]) == []
    assert len(PROFILE.conflicts([1, 1, 480, 640])) == 3


def test_sidecar_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "fnet_fp16.engine"
    assert write_sidecar(engine, sample_info()) == sidecar_path(engine)
    assert sidecar_path(engine).name == "fnet_fp16.engine.json"
    info = read_sidecar(engine)
    assert info == sample_info()
    assert info.shape_profile() == PROFILE


def test_missing_or_broken_sidecar_is_a_clear_input_error(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    with pytest.raises(InputError, match=r"no sidecar fnet\.engine\.json next to the engine"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(InputError, match="unreadable engine sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not an fnet-deploy engine sidecar"):
        read_sidecar(engine)
    data = dataclasses.asdict(sample_info())
    del data["gpu_name"]
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(InputError, match="malformed engine sidecar"):
        read_sidecar(engine)


def test_compatibility_names_the_tensorrt_version_and_the_gpu() -> None:
    info = sample_info()
    assert compatibility_problems(info, "10.3.0", "NVIDIA H200", "9.0") == []
    (version,) = compatibility_problems(info, "10.8.0", "NVIDIA H200", "9.0")
    assert "built with TensorRT 10.3.0, this machine has 10.8.0" in version
    (gpu,) = compatibility_problems(info, "10.3.0", "NVIDIA GeForce RTX 4090", "8.9")
    assert "built for NVIDIA H200 (compute capability 9.0)" in gpu
    assert "RTX 4090 (compute capability 8.9)" in gpu


def test_rebuild_command_repeats_precision_and_profile(tmp_path: Path) -> None:
    command = rebuild_command(tmp_path / "fnet_fp16.engine", sample_info())
    assert command.startswith("fnet-deploy export --weights FNet_official.pth")
    assert "--engine --fp16" in command
    assert "--min-shape 1x1x16x16 --opt-shape 1x1x64x64 --max-shape 2x1x128x128" in command
    int8 = rebuild_command(tmp_path / "e.engine", sample_info(precision="int8"))
    assert "--int8 --calib-ir" in int8


def test_calibration_batches_resize_real_pairs_into_full_batches() -> None:
    rng = np.random.default_rng(0)
    pairs = [
        ImagePair(
            str(i), rng.random((30 + i, 50), np.float32), rng.random((30 + i, 50), np.float32)
        )
        for i in range(5)
    ]
    batches = calibration_batches(pairs, (2, 1, 24, 40))
    assert len(batches) == 2
    for batch in batches:
        assert batch["ir"].shape == batch["vis"].shape == (2, 1, 24, 40)
        assert batch["ir"].dtype == np.float32 and batch["ir"].flags.c_contiguous
    with pytest.raises(FnetError, match="at least 8 pairs"):
        calibration_batches(pairs, (8, 1, 24, 40))


def test_calibration_cache_key_follows_the_model_and_the_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pairs = [ImagePair(str(i), *rng.random((2, 20, 30), np.float32)) for i in range(3)]
    model, other_model = tmp_path / "a.onnx", tmp_path / "b.onnx"
    model.write_bytes(b"model a")
    other_model.write_bytes(b"model b")
    batches = calibration_batches(pairs, (1, 1, 16, 24))
    key = calibration_key(model, batches)
    assert key == calibration_key(model, calibration_batches(pairs, (1, 1, 16, 24)))
    assert key != calibration_key(other_model, batches)
    assert key != calibration_key(model, batches[:2])
    assert key != calibration_key(model, calibration_batches(pairs, (1, 1, 24, 16)))


def test_engine_without_sidecar_is_refused_before_loading(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    engine.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="no sidecar"):
        TensorRTRunner(engine).activate()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_engine_with_sidecar_but_no_tensorrt_names_the_extra(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    engine.write_bytes(b"\0" * 64)
    write_sidecar(engine, sample_info(precision="fp32"))
    with pytest.raises(MissingDependencyError, match=r"fnet-deploy\[tensorrt\]"):
        TensorRTRunner(engine).activate()


# --- GPU: real engines ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(default_model: FNet, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(fnet.onnx, fnet_fp16.onnx) of the shipped trained model, as export writes them."""
    from fnet_deploy.backends.onnx_graph import OnnxSpec, build_onnx, save_onnx

    folder = tmp_path_factory.mktemp("trt")
    paths = []
    for precision in ("fp32", "fp16"):
        path = folder / ("fnet.onnx" if precision == "fp32" else "fnet_fp16.onnx")
        save_onnx(build_onnx(default_model, OnnxSpec(precision=precision), {}), path)
        paths.append(path)
    return paths[0], paths[1]


def build(onnx_path: Path, precision: str, calibration: list[ImagePair] | None = None) -> Path:
    from fnet_deploy.export.tensorrt_build import (
        ONNX_PRECISION,
        EngineBuildOptions,
        build_engine,
    )

    engine = onnx_path.parent / f"tiny_{precision}.engine"
    options = EngineBuildOptions(
        precision=precision,  # type: ignore[arg-type]
        profile=PROFILE,
        workspace_mib=512,
        timing_cache=onnx_path.parent / "timing.cache",
        calibration=calibration or [],
        calibration_cache=onnx_path.parent / "int8.cache",
    )
    build_engine(onnx_path, engine, options, onnx_precision=ONNX_PRECISION[precision])
    return engine


def torch_fused(model: FNet, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(feed["ir"]), torch.from_numpy(feed["vis"])).numpy()


@needs_gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_pytorch(
    default_model: FNet, exported: tuple[Path, Path], precision: str
) -> None:
    import tensorrt as trt

    onnx_path = exported[0] if precision == "fp32" else exported[1]
    engine = build(onnx_path, precision)
    info = read_sidecar(engine)
    assert info.precision == precision and info.tensorrt_version == trt.__version__
    assert info.onnx_sha256 == file_sha256(onnx_path) and info.profile == PROFILE.to_dict()
    assert (onnx_path.parent / "timing.cache").stat().st_size > 0
    pair = read_pair(*sample_pair(), "ycbcr")
    with TensorRTRunner(engine) as runner:
        for height, width, batch in [(64, 64, 1), (37, 120, 2)]:
            feed = pair.resized(height, width).feed(batch)
            stats = ErrorStats()
            stats.add(torch_fused(default_model, feed), runner.infer(feed)["fused"])
            assert stats.nonfinite == 0
            if precision == "fp32":
                assert stats.quantile(0.999) <= 0.5 and stats.max <= 1.0, stats.describe()
            else:
                assert stats.quantile(0.999) <= 2.0, stats.describe()
        with pytest.raises(FnetError, match="outside the engine's profile"):
            runner.infer({name: np.zeros((1, 1, 8, 8), np.float32) for name in ("ir", "vis")})


@needs_gpu
@pytest.mark.slow
def test_engine_from_another_tensorrt_version_is_refused_with_a_rebuild_command(
    exported: tuple[Path, Path],
) -> None:
    engine = build(exported[0], "fp32")
    info = read_sidecar(engine)
    write_sidecar(engine, dataclasses.replace(info, tensorrt_version="9.9.9"))
    with pytest.raises(InputError, match=r"built with TensorRT 9\.9\.9.*rebuild it here with: "):
        TensorRTRunner(engine).activate()
    write_sidecar(engine, dataclasses.replace(info, gpu_name="Some Other GPU"))
    with pytest.raises(InputError, match="built for Some Other GPU"):
        TensorRTRunner(engine).activate()


@needs_gpu
@pytest.mark.slow
def test_int8_engine_calibrates_on_real_pairs(exported: tuple[Path, Path]) -> None:
    folder = shared_path("data", "MSRS_test")
    names = sorted(p.name for p in (folder / "ir").iterdir())[:4]
    pairs = [read_pair(folder / "ir" / n, folder / "vi" / n, "ycbcr") for n in names]
    engine = build(exported[0], "int8", pairs)
    assert read_sidecar(engine).precision == "int8"
    assert (engine.parent / "int8.cache").stat().st_size > 0
    assert (engine.parent / "int8.cache.key").read_text() != ""
    feed = pairs[0].resized(64, 64).feed()
    with TensorRTRunner(engine) as runner:
        fused = runner.infer(feed)["fused"]
    assert fused.shape == (1, 1, 64, 64) and np.isfinite(fused).all()
