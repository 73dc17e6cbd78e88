"""One vocabulary on the command line: an option name means one thing in every command.

Every command's options are read from its click parameters (the app as typer builds it), not
from its help text: names, units, help and the values they parse (docs/backends.md, "One
vocabulary").
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, get_args

import pytest
import typer.main

from fnet_deploy.backends.engine_info import parse_shape
from fnet_deploy.bench.matrix import BACKENDS as BENCH_TARGETS
from fnet_deploy.cli import app
from fnet_deploy.commands.common import MODEL_HELP, TORCH_DEVICE_HELP, WEIGHTS_FILES, parse_size
from fnet_deploy.commands.renames import CONVERTED, OPTIONS
from fnet_deploy.inference.select import BACKENDS

COMMANDS: Any = typer.main.get_command(app)

MATRIX = {"bench"}
"""The documented exception to one help per option: bench's --backend, --precision, --size and
--batch take comma-separated lists, the axes of its timing matrix."""
TIME_UNITS = ("-ms", "-s", "-min")
"""How a time-valued option's name ends: its unit."""
TIME_WORDS = re.compile(
    r"\b(seconds?|minutes?|milliseconds?|ms|hours?|days?|timeout|how long|time gap|time box|"
    r"delay)\b",
    re.IGNORECASE,
)
"""What a time-valued option's help says (a duration or a moment, not a rate or a count)."""
TIME_NAMES = re.compile(r"time|second|minute|delay|skew|offset|wait|interval")
"""What a time-valued option's name says."""
NOT_DURATIONS = {"--fps", "--out-fps", "--max-batch", "--pair"}
"""Options whose help mentions time but whose value is not one (rates, a count, a pair's keys)."""


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command, subcommands as ``weights convert``."""
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(_commands(command, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


ALL = _commands(COMMANDS)


def visible_options() -> dict[tuple[str, str], Any]:
    """``{(command, option): parameter}`` for every option a user sees, flags' ``--no-`` too."""
    return {
        (command_name, opt): param
        for command_name, command in ALL.items()
        for param in command.params
        if not getattr(param, "hidden", False)
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }


def options_named(name: str) -> dict[str, Any]:
    """``{command: parameter}`` for every command with the visible option ``name``."""
    return {command: param for (command, opt), param in visible_options().items() if opt == name}


def choices(param: Any) -> list[str]:
    """The values a ``Literal``-typed option accepts."""
    return list(get_args(param.type_descriptor.annotation))


def helps(name: str, exceptions: Collection[str] = ()) -> set[str]:
    """The help texts of option ``name`` across the commands, less ``exceptions``."""
    return {
        param.help for command, param in options_named(name).items() if command not in exceptions
    }


def test_color_is_the_same_choice_everywhere() -> None:
    colors = options_named("--color")
    assert set(colors) == {"fuse", "stream", "explain", "check", "export", "weights convert"}
    for command, param in colors.items():
        assert choices(param) == ["keep", "gray"], command
        assert param.default == "keep", command


def test_no_command_keeps_the_ambiguous_luminance_option() -> None:
    assert options_named("--luminance") == {}
    gray = options_named("--metric-gray")
    assert set(gray) == {"eval"}
    assert choices(gray["eval"]) == ["bt601", "bt709"]


@pytest.mark.parametrize("name", ["--height", "--width", "--resolution", "--fp16", "--int8"])
def test_no_visible_option_splits_a_size_or_names_a_precision(name: str) -> None:
    assert options_named(name) == {}


def test_sizes_are_width_by_height_everywhere() -> None:
    sizes = options_named("--size")
    assert set(sizes) == {"stream", "bench", "export"}
    for command, param in sizes.items():
        assert "WIDTHxHEIGHT" in param.help, command
        examples = [param.default or "", *re.findall(r"\b\d+x\d+\b", param.help)]
        for text in (part for example in examples for part in example.split(",") if part):
            width, height = parse_size(text, "--size")
            assert text == f"{width}x{height}", (command, text)


@pytest.mark.parametrize("name", ["--min-shape", "--opt-shape", "--max-shape"])
def test_engine_profiles_are_tensor_shapes_or_sizes(name: str) -> None:
    (param,) = options_named(name).values()
    for words in ("NxCxHxW", "trtexec", "ir:1x1x480x640,vis:1x1x480x640", "WIDTHxHEIGHT"):
        assert words in param.help, (name, words)
    width, height = parse_size("640x480", name)
    assert parse_shape("640x480", name) == parse_shape("1x1x480x640", name) == (1, 1, height, width)
    assert parse_shape("ir:1x1x480x640,vis:1x1x480x640", name) == (1, 1, 480, 640)


def test_time_valued_options_name_their_unit() -> None:
    durations = {
        (command, opt)
        for (command, opt), param in visible_options().items()
        if opt not in NOT_DURATIONS
        and not opt.startswith("--no-")
        and (TIME_WORDS.search(param.help or "") or TIME_NAMES.search(opt))
    }
    assert {opt for _, opt in durations} >= {
        "--max-time-s",
        "--max-time-min",
        "--max-skew-ms",
        "--ir-offset-ms",
        "--batch-timeout-ms",
        "--reconnect-timeout-s",
    }
    for command, opt in durations:
        assert opt.endswith(TIME_UNITS), (command, opt)


def test_weights_have_one_help_where_omitted_means_the_packaged_weights() -> None:
    weights = options_named("--weights")
    assert set(weights) == {
        *("fuse", "stream", "explain", "bench", "export", "eval", "check", "serve")
    }
    assert len(helps("--weights", {"eval", "check"})) == 1
    for command in ("eval", "check"):  # what differs is said after the shared words
        assert weights[command].help.startswith(WEIGHTS_FILES), command
    assert "reference" in weights["check"].help and "--name" in weights["eval"].help


def test_device_has_one_help_per_meaning() -> None:
    devices = options_named("--device")
    run = {"fuse", "stream", "eval", "check", "bench", "serve"}
    assert run | {"explain", "train", "export"} == set(devices)
    assert len({devices[command].help for command in run}) == 1
    assert devices["explain"].help == TORCH_DEVICE_HELP
    assert devices["train"].help.startswith(TORCH_DEVICE_HELP)
    assert "engines" in devices["export"].help and devices["export"].help not in helps(
        "--device", {"export"}
    )


def test_backends_have_one_set_of_names() -> None:
    backends = options_named("--backend")
    assert set(backends) == {"fuse", "stream", "eval", "check", "bench", "serve"}
    assert len(helps("--backend", MATRIX)) == 1
    for name in BACKENDS:  # what open_runner takes, bench names the same way
        assert name in BENCH_TARGETS, name
    assert "torch-deploy" not in BENCH_TARGETS


def test_precision_has_one_help_per_meaning() -> None:
    precisions = options_named("--precision")
    assert set(precisions) == {"fuse", "stream", "bench", "export", "serve"}
    assert len(helps("--precision", MATRIX | {"export"})) == 1  # the precision a model runs in
    assert "Comma-separated" in precisions["bench"].help  # the matrix's axis
    assert "always written" in precisions["export"].help  # the models written


def test_batch_says_what_it_counts() -> None:
    batches = options_named("--batch")
    assert set(batches) == {"export", "bench", "train"}
    assert "Fix the batch N" in batches["export"].help
    assert "Comma-separated batch sizes" in batches["bench"].help
    assert "crops per iteration" in batches["train"].help


def test_model_means_an_exported_model_where_models_run() -> None:
    models = options_named("--model")
    assert set(models) == {"fuse", "stream", "eval", "serve"}
    assert models["fuse"].help == models["stream"].help == models["serve"].help == MODEL_HELP
    assert models["eval"].help.startswith(MODEL_HELP)


@pytest.mark.parametrize("command", sorted(set(OPTIONS) | set(CONVERTED)))
def test_every_old_spelling_is_gone_and_its_new_one_there(command: str) -> None:
    options = {opt for (name, opt) in visible_options() if name == command}
    for rename in (*OPTIONS.get(command, ()), *CONVERTED.get(command, ())):
        assert rename.old not in options and rename.new in options, rename
