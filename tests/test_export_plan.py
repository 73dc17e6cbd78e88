"""The export's plan: built from the command's options, refused when they contradict each other."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fnet_deploy.export.plan import DEFAULT_PROFILE, ExportPlan, export_plan
from fnet_deploy.helpers.errors import FnetError

OUT = Path("/nonexistent/out")


def plan(**options: Any) -> ExportPlan:
    """The plan of ``fnet-deploy export --out OUT`` with ``options`` (by parameter name)."""
    defaults: dict[str, Any] = {
        "out": OUT,
        "weights": None,
        "fp16": False,
        "batch": None,
        "height": None,
        "width": None,
        "opset": 18,
        "merge_encoders": False,
        "col2im": False,
        "ir": None,
        "vis": None,
        "luminance": "ycbcr",
        "engine": False,
        "int8": False,
        "implicit_int8": False,
        "calib_ir": None,
        "calib_vis": None,
        "calib_limit": 64,
        "calib_method": "max",
        "float_layers": None,
        "min_shape": None,
        "opt_shape": None,
        "max_shape": None,
        "workspace": 2048,
        "timing_cache": None,
        "device": "cuda:0",
        "triton_repo": None,
        "triton_name": "fnet",
        "triton_accelerator": "none",
    }
    return export_plan(**{**defaults, **options})


CALIB = {"calib_ir": Path("ir"), "calib_vis": Path("vis")}
SHAPES = {"min_shape": "1x1x64x64", "opt_shape": "1x1x480x640", "max_shape": "2x1x1088x1920"}
PER_INPUT = {option: f"ir:{shape},vis:{shape}" for option, shape in SHAPES.items()}
"""An engine profile as tensor shapes for both inputs, and in trtexec's per-input form."""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ir": Path("a.png")}, "give both --ir and --vis"),
        ({"int8": True, "implicit_int8": True, "engine": True, **CALIB}, "choose one"),
        ({"implicit_int8": True, "engine": True}, "--implicit-int8 needs real calibration"),
        ({"implicit_int8": True, **CALIB}, "--implicit-int8 builds a TensorRT engine"),
        ({"float_layers": "tail_*"}, "--float-layers shapes the INT8 model"),
        ({"int8": True, "float_layers": "tail_*,"}, "an empty layer name"),
        ({"engine": True, "min_shape": "64x64"}, "give all of --min-shape"),
        ({"engine": True, "min_shape": "9x9", "opt_shape": "8x8", "max_shape": "9x9"}, "min <="),
        ({"triton_repo": Path("r"), "device": "gpu"}, "--device 'gpu'"),
        ({"engine": True, **PER_INPUT, "min_shape": "ir:64x64,vis:64x32"}, "ir 1x1x64x64 and vis"),
        ({"engine": True, **PER_INPUT, "min_shape": "ir:64x64"}, "no shape for input vis"),
        ({"engine": True, **PER_INPUT, "min_shape": "ir:64x64,rgb:64x64"}, "each input once"),
    ],
)
def test_contradicting_options_are_refused_when_the_plan_is_built(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(FnetError, match=message.replace("*", r"\*")):
        plan(**options)


def test_default_engine_profile_keeps_the_fixed_onnx_dimensions() -> None:
    fixed = plan(engine=True, batch=2, height=96, width=128).engines
    assert fixed is not None
    assert fixed.profile.min == fixed.profile.opt == fixed.profile.max == (2, 1, 96, 128)
    dynamic = plan(engine=True).engines
    assert dynamic is not None
    assert (dynamic.profile.min, dynamic.profile.opt, dynamic.profile.max) == DEFAULT_PROFILE


def test_engine_profiles_take_trtexecs_per_input_form() -> None:
    per_input, both = plan(engine=True, **PER_INPUT).engines, plan(engine=True, **SHAPES).engines
    assert per_input is not None and per_input == both
    assert per_input.profile.max == (2, 1, 1088, 1920)


def test_engines_follow_the_onnx_models_and_the_timing_cache_defaults_to_the_output() -> None:
    assert plan().engines is None
    engines = plan(engine=True, fp16=True, implicit_int8=True, **CALIB).engines
    assert engines is not None
    assert engines.precisions == ("fp32", "fp16", "int8") and engines.implicit_int8
    assert engines.timing_cache == OUT / "timing.cache"
    int8 = plan(engine=True, int8=True, timing_cache=Path("t.cache"))
    assert int8.engines is not None and int8.int8 is not None
    assert int8.engines.precisions == ("fp32", "int8") and not int8.engines.implicit_int8
    assert int8.engines.timing_cache == Path("t.cache")


def test_a_plan_cannot_change_once_built() -> None:
    built = plan(int8=True, **CALIB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.fp16 = True  # type: ignore[misc]
    assert built.calibration is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.calibration.limit = 1  # type: ignore[misc]


def test_building_a_plan_imports_neither_torch_nor_onnx() -> None:
    """Options are refused (or accepted) before the seconds PyTorch takes to import."""
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from tests.test_export_plan import plan\n"
        "plan(engine=True, fp16=True, triton_repo=Path('r'))\n"
        "print(sorted({'torch', 'onnx', 'onnxruntime'} & set(sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "[]"
