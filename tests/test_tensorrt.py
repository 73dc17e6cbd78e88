"""TensorRT: profiles, the engine sidecar and its compatibility check, the build modes each
TensorRT version allows, calibration batches and caches, the timing-cache replacement, the
torch-held buffers, the equivalent polygraphy / trtexec commands; engine build and inference on
a GPU (skipped, with the reason, where TensorRT, Polygraphy or a CUDA GPU is absent)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from fnet_deploy.assets import sample_pair
from fnet_deploy.backends.base import SizeRange
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
from fnet_deploy.backends.tensor_buffers import TensorBuffers
from fnet_deploy.backends.tensorrt_runner import TensorRTRunner, select_gpu
from fnet_deploy.export.parity import ErrorStats, ImagePair, iter_pairs, read_pair
from fnet_deploy.export.tensorrt_build import (
    BuildMode,
    CalibrationFeeds,
    TimingCacheFile,
    build_mode,
    calibration_batches,
    calibration_key,
    calibration_key_path,
    discard_stale_calibration_cache,
    onnx_precision_for,
    tensorrt_major,
)
from fnet_deploy.export.tensorrt_commands import (
    EngineRecipe,
    equivalent_commands,
    polygraphy_check,
    polygraphy_convert,
    trtexec_build,
)
from fnet_deploy.helpers.errors import FnetError, InputError, MissingDependencyError
from fnet_deploy.model import FNet
from fnet_deploy.model.weights import file_sha256
from tests.conftest import FIXTURES

PROFILE = ShapeProfile((1, 1, 16, 16), (1, 1, 64, 64), (2, 1, 128, 128))


def gpu_skip_reason() -> str | None:
    """Why the GPU tests cannot run here, or ``None`` when they can."""
    for module in ("tensorrt", "polygraphy"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'fnet-deploy[tensorrt]')"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__}"
    return None


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


def real_pairs() -> list[ImagePair]:
    """The three TNO crops of tests/fixtures as network inputs."""
    return list(iter_pairs(FIXTURES / "TNO" / "ir", FIXTURES / "TNO" / "vi", "ycbcr"))


# --- shapes and the sidecar ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [("1x1x480x640", (1, 1, 480, 640)), ("640x480", (1, 1, 480, 640)), ("4X1X8X9", (4, 1, 8, 9))],
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


def test_profile_gives_the_image_sizes_an_engine_takes() -> None:
    assert PROFILE.size_range() == SizeRange((16, 16), (128, 128))
    assert PROFILE.size_range().fits(100, 17) and not PROFILE.size_range().fits(8, 64)
    fixed = ShapeProfile((1, 1, 480, 640), (1, 1, 480, 640), (4, 1, 480, 640))
    assert fixed.size_range().fixed


def test_sidecar_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "fnet_fp16.engine"
    recorded = sample_info(
        model_config={"filters": 8, "kernel_size": 3, "iterations": 2},
        notes={"strongly_typed": True, "implicit_int8": False},
    )
    assert write_sidecar(engine, recorded) == sidecar_path(engine)
    assert sidecar_path(engine).name == "fnet_fp16.engine.json"
    info = read_sidecar(engine)
    assert info == recorded
    assert info.shape_profile() == PROFILE and not info.implicit_int8


def test_sidecar_written_before_model_config_was_recorded_still_reads(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    data = dataclasses.asdict(sample_info())
    del data["model_config"]
    sidecar_path(engine).write_text(json.dumps(data))
    assert read_sidecar(engine).model_config is None


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


def test_rebuild_command_repeats_precision_profile_and_int8_path(tmp_path: Path) -> None:
    command = rebuild_command(tmp_path / "fnet_fp16.engine", sample_info())
    assert command.startswith("fnet-deploy export --weights FNet_official.pth")
    assert "--engine --precision fp16" in command
    assert "--min-shape 1x1x16x16 --opt-shape 1x1x64x64 --max-shape 2x1x128x128" in command
    qdq = rebuild_command(tmp_path / "e.engine", sample_info(precision="int8"))
    assert "--engine --precision int8 --calib-ir" in qdq
    implicit = sample_info(precision="int8", notes={"implicit_int8": True})
    assert "--engine --implicit-int8 --calib-ir" in rebuild_command(tmp_path / "e.engine", implicit)


# --- what each TensorRT version builds ----------------------------------------------------


@pytest.mark.parametrize(
    ("version", "major"), [("10.13.3.9", 10), ("11.4.0.106", 11), ("8.6.1", 8), ("dev", 0)]
)
def test_tensorrt_major(version: str, major: int) -> None:
    assert tensorrt_major(version) == major


@pytest.mark.parametrize("version", ["10.0.1", "10.16.1.11", "11.0.0.114", "11.4.0.106"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_precision_builds_strongly_typed_from_its_own_model_on_tensorrt_10_and_11(
    version: str, precision: str
) -> None:
    mode = build_mode(precision, precision, version)  # type: ignore[arg-type]
    assert mode == BuildMode(strongly_typed=True, implicit_int8=False)
    assert onnx_precision_for(precision) == precision  # type: ignore[arg-type]


def test_implicit_int8_only_on_tensorrt_10() -> None:
    assert onnx_precision_for("int8", implicit_int8=True) == "fp32"
    assert build_mode("int8", "fp32", "10.13.3.9") == BuildMode(False, True)
    for version in ("11.0.0.114", "11.4.0.106"):
        with pytest.raises(FnetError) as err:
            build_mode("int8", "fp32", version)
        message = str(err.value)
        assert "\n" not in message and f"TensorRT {version} has no implicit INT8" in message
        assert "--precision int8" in message and "--implicit-int8" in message


def test_wrong_model_or_old_tensorrt_is_refused() -> None:
    with pytest.raises(FnetError, match="a fp16 engine is built from the fp16 ONNX model, not a"):
        build_mode("fp16", "fp32", "10.3.0")
    with pytest.raises(FnetError, match=r"a fp32 engine .* not a int8 one"):
        build_mode("fp32", "int8", "11.0.0")
    with pytest.raises(FnetError, match=r"TensorRT 8\.6\.1 is too old"):
        build_mode("fp32", "fp32", "8.6.1")


# --- INT8 calibration data and cache (the deprecated TensorRT 10 path) ---------------------


def test_calibration_batches_resize_real_pairs_into_full_batches() -> None:
    pairs = real_pairs()
    batches = calibration_batches(pairs, (2, 1, 24, 40))
    assert len(batches) == 1  # three pairs: one full batch of two, the third dropped
    for batch in batches:
        assert batch["ir"].shape == batch["vis"].shape == (2, 1, 24, 40)
        assert batch["ir"].dtype == np.float32 and batch["ir"].flags.c_contiguous
        assert batch["ir"].min() >= 0.0 and batch["ir"].max() <= 1.0
    with pytest.raises(FnetError, match="at least 8 pairs"):
        calibration_batches(pairs, (8, 1, 24, 40))


def test_calibration_cache_key_follows_the_model_and_the_data(tmp_path: Path) -> None:
    pairs = real_pairs()
    model, other_model = tmp_path / "a.onnx", tmp_path / "b.onnx"
    model.write_bytes(b"model a")
    other_model.write_bytes(b"model b")
    batches = calibration_batches(pairs, (1, 1, 16, 24))
    key = calibration_key(model, batches)
    assert key == calibration_key(model, calibration_batches(pairs, (1, 1, 16, 24)))
    assert key != calibration_key(other_model, batches)
    assert key != calibration_key(model, batches[:2])
    assert key != calibration_key(model, calibration_batches(pairs, (1, 1, 24, 16)))


def test_a_calibration_cache_is_kept_only_for_its_own_key(tmp_path: Path) -> None:
    cache = tmp_path / "int8_calibration.cache"
    key_file = calibration_key_path(cache)
    assert key_file.name == "int8_calibration.cache.key"
    assert not discard_stale_calibration_cache(cache, "k1")  # nothing there
    cache.write_bytes(b"scales")
    key_file.write_text("k1")
    assert not discard_stale_calibration_cache(cache, "k1")
    assert cache.read_bytes() == b"scales"
    assert discard_stale_calibration_cache(cache, "k2")
    assert not cache.exists() and not key_file.exists()
    cache.write_bytes(b"scales without a key")  # e.g. a build that died before writing it
    assert discard_stale_calibration_cache(cache, "k1") and not cache.exists()


def test_calibration_feeds_upload_each_batch_into_the_same_buffers() -> None:
    batches = calibration_batches(real_pairs(), (1, 1, 24, 40))
    feeds = CalibrationFeeds(batches, TensorBuffers("cpu"))
    assert len(feeds) == 3
    for _ in range(2):  # Polygraphy rewinds the loader when it calibrates again
        pointers = set()
        for feed, batch in zip(feeds, batches, strict=True):
            for name in ("ir", "vis"):
                assert feed[name].dtype == torch.float32
                np.testing.assert_array_equal(feed[name].numpy(), batch[name])
                pointers.add((name, feed[name].data_ptr()))
        assert len(pointers) == 2  # one buffer per input, reused for every batch


# --- device buffers held by torch tensors --------------------------------------------------


def test_buffers_grow_on_demand_and_reuse_their_memory() -> None:
    buffers = TensorBuffers("cpu")
    first = buffers.view("fused", (1, 1, 8, 8))
    assert first.shape == (1, 1, 8, 8) and first.is_contiguous() and first.dtype == torch.float32
    assert buffers.capacity("fused") == 64 and buffers.capacity("ir") == 0
    smaller = buffers.view("fused", (2, 1, 4, 3))
    assert smaller.data_ptr() == first.data_ptr() and buffers.capacity("fused") == 64
    larger = buffers.view("fused", (1, 1, 10, 10))
    assert buffers.capacity("fused") == 100 and larger.is_contiguous()
    again = buffers.view("fused", (1, 1, 8, 8))
    assert again.data_ptr() == larger.data_ptr()
    buffers.clear()
    assert buffers.capacity("fused") == 0


def test_upload_copies_any_host_layout_as_float32() -> None:
    buffers = TensorBuffers("cpu")
    array = np.arange(24, dtype=np.float64).reshape(1, 1, 6, 4)[..., ::-1]  # not contiguous
    tensor = buffers.upload("ir", array)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.numpy(), array.astype(np.float32))
    array[...] = 0  # the buffer holds a copy
    assert tensor.abs().sum() > 0


def test_without_a_gpu_tensorrt_says_so_in_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(FnetError) as err:
        select_gpu(0)
    assert "\n" not in str(err.value) and "torch.cuda reports none" in str(err.value)


# --- the timing cache ----------------------------------------------------------------------


class StandInCache:
    """A timing cache tied to one GPU, as ``ITimingCache`` is."""

    def __init__(self, gpu: str, entries: bytes = b"") -> None:
        self.gpu, self.entries = gpu, entries

    def serialize(self) -> bytes:
        return f"TC|{self.gpu}|".encode() + self.entries


class StandInConfig:
    """The part of ``IBuilderConfig`` a timing cache touches, with TensorRT's documented
    results: ``create_timing_cache`` gives ``None`` for bytes that are not a cache, and
    ``set_timing_cache(..., ignore_mismatch=False)`` refuses a cache from another GPU."""

    def __init__(self, gpu: str) -> None:
        self.gpu = gpu
        self.cache: StandInCache | None = StandInCache(gpu)  # Polygraphy sets an empty one

    def create_timing_cache(self, data: bytes) -> StandInCache | None:
        if not data:
            return StandInCache(self.gpu)
        parts = data.split(b"|", 2)
        if len(parts) != 3 or parts[0] != b"TC":
            return None
        return StandInCache(parts[1].decode(), parts[2])

    def set_timing_cache(self, cache: StandInCache, ignore_mismatch: bool) -> bool:
        if cache.gpu != self.gpu and not ignore_mismatch:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> StandInCache | None:
        return self.cache

    def build(self) -> None:
        """What a build does to the cache: it adds the tactics it timed."""
        assert self.cache is not None
        self.cache.entries += b"+tactics"


def test_a_timing_cache_from_this_gpu_is_loaded_and_extended(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(b"TC|H200|old")
    timing, config = TimingCacheFile(path), StandInConfig("H200")
    timing.attach(None, None, config)
    config.build()
    timing.save()
    assert not timing.stale and path.read_bytes() == b"TC|H200|old+tactics"


@pytest.mark.parametrize("stored", [b"TC|RTX 4090|old", b"garbage"])
def test_a_timing_cache_tensorrt_rejects_is_replaced_not_merged(
    tmp_path: Path, stored: bytes
) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(stored)
    timing, config = TimingCacheFile(path), StandInConfig("H200")
    timing.attach(None, None, config)
    config.build()
    timing.save()
    assert timing.stale and path.read_bytes() == b"TC|H200|+tactics"


def test_a_missing_timing_cache_is_created_and_none_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    timing, config = TimingCacheFile(path), StandInConfig("H200")
    timing.attach(None, None, config)
    config.build()
    timing.save()
    assert not timing.stale and path.read_bytes() == b"TC|H200|+tactics"
    unused = TimingCacheFile(None)
    unused.attach(None, None, StandInConfig("H200"))
    unused.save()
    assert not unused.stale and sorted(tmp_path.iterdir()) == [path]


# --- the equivalent polygraphy and trtexec commands ----------------------------------------


def recipe(**changes: object) -> EngineRecipe:
    base = EngineRecipe(
        onnx=Path("out/fnet.onnx"),
        engine=Path("out/fnet.engine"),
        precision="fp32",
        profile=PROFILE,
        workspace_mib=2048,
        timing_cache=Path("out/timing.cache"),
        implicit_int8=False,
        calibration_cache=None,
        tensorrt_major=10,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def polygraphy_parser() -> argparse.ArgumentParser:
    """The installed Polygraphy's own command-line parser (all tools)."""
    if importlib.util.find_spec("polygraphy") is None:
        pytest.skip("polygraphy is not installed (pip install 'fnet-deploy[tensorrt]')")
    from polygraphy.tools.registry import TOOL_REGISTRY

    parser = argparse.ArgumentParser(prog="polygraphy")
    tools = parser.add_subparsers(dest="tool")
    for tool in TOOL_REGISTRY:
        tool.setup_parser(tools)
    return parser


def test_polygraphy_convert_line_repeats_the_build() -> None:
    words = shlex.split(polygraphy_convert(recipe()))
    assert words[:4] == ["polygraphy", "convert", "out/fnet.onnx", "--strongly-typed"]
    at = words.index("--trt-max-shapes")
    assert words[at + 1 : at + 3] == ["ir:[2,1,128,128]", "vis:[2,1,128,128]"]
    assert "workspace:2048M" in words and words[-2:] == ["-o", "out/fnet.engine"]
    assert "--load-timing-cache" in words and "--save-timing-cache" in words
    implicit = shlex.split(
        polygraphy_convert(
            recipe(implicit_int8=True, calibration_cache=Path("out/int8_calibration.cache"))
        )
    )
    assert "--strongly-typed" not in implicit
    assert implicit[3:6] == ["--int8", "--calibration-cache", "out/int8_calibration.cache"]
    assert "--load-timing-cache" not in shlex.split(polygraphy_convert(recipe(timing_cache=None)))


@pytest.mark.filterwarnings("ignore:SelectableGroups dict interface:DeprecationWarning")
def test_polygraphy_lines_are_accepted_by_polygraphy_itself() -> None:
    parser = polygraphy_parser()
    for line in (
        polygraphy_convert(recipe()),
        polygraphy_convert(recipe(implicit_int8=True, calibration_cache=Path("c.cache"))),
        *polygraphy_check(recipe(), 0.5),
    ):
        args = parser.parse_args(shlex.split(line)[1:])
        assert args.tool in ("convert", "run")
    convert = parser.parse_args(shlex.split(polygraphy_convert(recipe()))[1:])
    assert convert.strongly_typed and convert.output == "out/fnet.engine"
    assert convert.trt_opt_shapes == [["ir:[1,1,64,64]", "vis:[1,1,64,64]"]]
    compare = parser.parse_args(shlex.split(polygraphy_check(recipe(), 0.5)[1])[1:])
    assert compare.model_type == "engine" and compare.check_error_stat == ["quantile"]


def test_polygraphy_check_compares_at_the_parity_tolerance() -> None:
    save, compare = (shlex.split(line) for line in polygraphy_check(recipe(), 2.0))
    assert save[:5] == ["polygraphy", "run", "out/fnet.onnx", "--onnxrt", "--input-shapes"]
    reference = save[save.index("--save-outputs") + 1]
    assert reference == "out/fnet_onnxrt_outputs.json"
    assert compare[compare.index("--load-outputs") + 1] == reference
    assert float(compare[compare.index("--atol") + 1]) == pytest.approx(2.0 / 255, rel=1e-3)
    assert compare[compare.index("--error-quantile") + 1] == "0.999"
    at = compare.index("--input-shapes")
    assert compare[at + 1 : at + 3] == ["ir:[1,1,64,64]", "vis:[1,1,64,64]"]


def test_trtexec_line_follows_the_tensorrt_version() -> None:
    ten = shlex.split(trtexec_build(recipe()))
    assert ten[:3] == ["trtexec", "--onnx=out/fnet.onnx", "--saveEngine=out/fnet.engine"]
    assert "--stronglyTyped" in ten and "--noTF32" in ten
    assert "--minShapes=ir:1x1x16x16,vis:1x1x16x16" in ten
    assert "--maxShapes=ir:2x1x128x128,vis:2x1x128x128" in ten
    assert "--memPoolSize=workspace:2048M" in ten and "--timingCacheFile=out/timing.cache" in ten
    eleven = shlex.split(trtexec_build(recipe(tensorrt_major=11)))
    assert "--stronglyTyped" not in eleven  # always on in TensorRT 11
    implicit = shlex.split(
        trtexec_build(recipe(implicit_int8=True, calibration_cache=Path("c.cache")))
    )
    assert "--int8" in implicit and "--calib=c.cache" in implicit
    assert "--stronglyTyped" not in implicit


def test_equivalent_commands_quote_paths_for_the_shell() -> None:
    spaced = recipe(onnx=Path("my models/fnet.onnx"), engine=Path("my models/fnet.engine"))
    commands = equivalent_commands(spaced, 0.5)
    assert set(commands) == {"polygraphy_convert", "trtexec", "polygraphy_run"}
    convert = shlex.split(commands["polygraphy_convert"][0])
    assert convert[2] == "my models/fnet.onnx"
    assert shlex.split(commands["trtexec"][0])[1] == "--onnx=my models/fnet.onnx"


# --- the runner without TensorRT ------------------------------------------------------------


def test_engine_without_sidecar_is_refused_before_loading(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    engine.write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="no sidecar"):
        TensorRTRunner(engine).activate()


def test_malformed_model_config_in_sidecar_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "fnet.engine"
    engine.write_bytes(b"\0" * 64)
    write_sidecar(engine, sample_info(model_config={"filters": -3}))
    with pytest.raises(InputError, match="malformed model_config"):
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
def exported(default_model: FNet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fnet.onnx, fnet_fp16.onnx and a Q/DQ fnet_int8.onnx of the shipped trained model."""
    from fnet_deploy.export.onnx_graph import OnnxSpec, build_onnx, save_onnx

    folder = tmp_path_factory.mktemp("trt")
    paths = {}
    for precision in ("fp32", "fp16"):
        path = folder / ("fnet.onnx" if precision == "fp32" else "fnet_fp16.onnx")
        save_onnx(build_onnx(default_model, OnnxSpec(precision=precision), {}), path)
        paths[precision] = path
    paths["int8"] = quantized(paths["fp32"], folder / "fnet_int8.onnx")
    return paths


def quantized(fp32: Path, out: Path) -> Path:
    """A Q/DQ model (ONNX Runtime static quantization: symmetric INT8, per-channel weights)
    calibrated on the TNO crops, for the strongly typed INT8 build."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Pairs(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.feeds = iter(pair.resized(64, 64).feed() for pair in real_pairs())

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantize_static(
        str(fp32),
        str(out),
        Pairs(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},  # as TensorRT needs
    )
    return out


def build(
    onnx_path: Path, precision: str, onnx_precision: str, calibration: list[ImagePair] | None = None
) -> Path:
    from fnet_deploy.export.tensorrt_build import EngineBuildOptions, build_engine

    engine = onnx_path.parent / f"tiny_{precision}_{onnx_precision}.engine"
    options = EngineBuildOptions(
        precision=precision,  # type: ignore[arg-type]
        profile=PROFILE,
        workspace_mib=512,
        timing_cache=onnx_path.parent / "timing.cache",
        calibration=calibration or [],
        calibration_cache=onnx_path.parent / "int8.cache",
    )
    build_engine(onnx_path, engine, options, onnx_precision=onnx_precision)
    return engine


def torch_fused(model: FNet, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(feed["ir"]), torch.from_numpy(feed["vis"])).numpy()


@needs_gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_pytorch(
    default_model: FNet, exported: dict[str, Path], precision: str
) -> None:
    import tensorrt as trt

    onnx_path = exported[precision]
    engine = build(onnx_path, precision, precision)
    info = read_sidecar(engine)
    assert info.precision == precision and info.tensorrt_version == trt.__version__
    assert info.onnx_sha256 == file_sha256(onnx_path) and info.profile == PROFILE.to_dict()
    assert info.notes["strongly_typed"] and not info.implicit_int8
    assert (onnx_path.parent / "timing.cache").stat().st_size > 0
    pair = read_pair(*sample_pair(), "ycbcr")
    with TensorRTRunner(engine) as runner:
        assert runner.size_range == PROFILE.size_range()
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
    exported: dict[str, Path],
) -> None:
    engine = build(exported["fp32"], "fp32", "fp32")
    info = read_sidecar(engine)
    write_sidecar(engine, dataclasses.replace(info, tensorrt_version="9.9.9"))
    with pytest.raises(InputError, match=r"built with TensorRT 9\.9\.9.*rebuild it here with: "):
        TensorRTRunner(engine).activate()
    write_sidecar(engine, dataclasses.replace(info, gpu_name="Some Other GPU"))
    with pytest.raises(InputError, match="built for Some Other GPU"):
        TensorRTRunner(engine).activate()


@needs_gpu
@pytest.mark.slow
def test_a_timing_cache_from_elsewhere_is_replaced_by_a_build(exported: dict[str, Path]) -> None:
    cache = exported["fp32"].parent / "timing.cache"
    cache.write_bytes(b"not a timing cache of this GPU")
    engine = build(exported["fp32"], "fp32", "fp32")
    assert read_sidecar(engine).notes["stale_timing_cache_replaced"]
    assert cache.read_bytes() != b"not a timing cache of this GPU"


@needs_gpu
@pytest.mark.slow
def test_qdq_int8_engine_builds_strongly_typed(
    default_model: FNet, exported: dict[str, Path]
) -> None:
    engine = build(exported["int8"], "int8", "int8")
    info = read_sidecar(engine)
    assert info.precision == "int8" and info.notes["strongly_typed"] and not info.implicit_int8
    feed = real_pairs()[0].resized(64, 64).feed()
    with TensorRTRunner(engine) as runner:
        fused = runner.infer(feed)["fused"]
    assert fused.shape == (1, 1, 64, 64) and np.isfinite(fused).all()


@needs_gpu
@pytest.mark.slow
def test_implicit_int8_calibrates_on_real_pairs_on_tensorrt_10_only(
    exported: dict[str, Path],
) -> None:
    import tensorrt as trt

    pairs = real_pairs()
    if tensorrt_major(trt.__version__) >= 11:
        with pytest.raises(FnetError, match="no implicit INT8"):
            build(exported["fp32"], "int8", "fp32", pairs)
        return
    engine = build(exported["fp32"], "int8", "fp32", pairs)
    assert read_sidecar(engine).implicit_int8
    cache = engine.parent / "int8.cache"
    assert cache.stat().st_size > 0 and calibration_key_path(cache).read_text() != ""
    feed = pairs[0].resized(64, 64).feed()
    with TensorRTRunner(engine) as runner:
        fused = runner.infer(feed)["fused"]
    assert fused.shape == (1, 1, 64, 64) and np.isfinite(fused).all()
