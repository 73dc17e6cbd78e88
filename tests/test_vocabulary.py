"""One vocabulary on the command line: an option name means one thing in every command."""

from __future__ import annotations

from typing import Any, get_args

import typer.main

from fnet_deploy.bench.matrix import BACKENDS as BENCH_TARGETS
from fnet_deploy.cli import app
from fnet_deploy.inference.select import BACKENDS

COMMANDS: Any = typer.main.get_command(app)


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command, subcommands as ``weights convert``."""
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(_commands(command, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


def options_named(name: str) -> dict[str, Any]:
    """``{command: parameter}`` for every command with the option ``name``."""
    return {
        command_name: param
        for command_name, command in _commands(COMMANDS).items()
        for param in command.params
        if name in getattr(param, "opts", [])
    }


def choices(param: Any) -> list[str]:
    """The values a ``Literal``-typed option accepts."""
    return list(get_args(param.type_descriptor.annotation))


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


def test_sizes_are_width_by_height_everywhere() -> None:
    sizes = options_named("--size")
    assert set(sizes) == {"stream", "bench"}
    assert options_named("--resolution") == {}
    for command, param in sizes.items():
        assert "WxH" in param.help or "WIDTHxHEIGHT" in param.help, command


def test_backends_have_one_set_of_names() -> None:
    backends = options_named("--backend")
    assert set(backends) == {"fuse", "stream", "eval", "check", "bench", "serve"}
    assert len({backends[c].help for c in ("fuse", "stream", "eval", "check", "serve")}) == 1
    for name in BACKENDS:  # what open_runner takes, bench names the same way
        assert name in BENCH_TARGETS, name
    assert "torch-deploy" not in BENCH_TARGETS


def test_model_means_an_exported_model_where_models_run() -> None:
    models = options_named("--model")
    assert {"fuse", "stream"} <= set(models) and "eval" in models
    assert models["fuse"].help == models["stream"].help
