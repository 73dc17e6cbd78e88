"""The package's layers import downward only (the house rule, kept by a test).

Every ``fnet_deploy`` import in a module, at the top or inside a function, is read from its
syntax tree; a package may import only itself and the packages listed below it. Every package
and top-level module is listed, so a new one must take its place in the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fnet_deploy
from fnet_deploy.cli import COMMANDS

ROOT = Path(fnet_deploy.__file__).parent

SHARED = {"__version__", "assets", "helpers"}
"""What every layer may use: the version, the packaged files and :mod:`fnet_deploy.helpers`."""
BELOW: dict[str, set[str]] = {
    "helpers": set(),
    "model": set(),
    "data": set(),
    "metrics": {"data"},
    "backends": {"model", "data"},
    "export": {"model", "data", "backends"},
    "inference": {"model", "data", "backends", "export"},
    "training": {"model", "data", "metrics", "backends"},
    "runtime": {"model", "data", "backends"},
    "calibration": {"model", "data", "runtime"},
    "explain": {"model", "data", "backends", "inference"},
    "bench": {"model", "data", "backends", "export", "inference"},
    "evaluation": {"model", "data", "metrics", "backends", "export", "inference"},
    "serving": {"model", "data", "backends", "inference"},
    "commands": {
        "model",
        "data",
        "metrics",
        "backends",
        "export",
        "inference",
        "training",
        "runtime",
        "calibration",
        "explain",
        "bench",
        "evaluation",
        "serving",
    },
}
"""What each package may import from the package besides itself and :data:`SHARED`, lowest
first."""
TOP_LEVEL: dict[str, set[str]] = {"__init__": set(), "__main__": {"cli"}, "cli": {"commands"}}
"""The modules at the package root: the version, ``python -m fnet_deploy`` and the CLI (which
names its commands' modules as text and imports one only when it runs, and reads the old
spellings of :mod:`fnet_deploy.commands.renames`)."""
ENTRY_POINTS = {ROOT / "training" / "__main__.py"}
"""``python -m fnet_deploy.training`` (torchrun's entry) runs the train command: a launcher, not
a library import."""


def _imported(path: Path) -> set[str]:
    """The ``fnet_deploy`` subpackages or top-level modules that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "fnet_deploy":
                names = [f"fnet_deploy.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fnet_deploy" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_and_root_module_has_its_place() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"assets"}
    modules = {path.stem for path in ROOT.glob("*.py")}
    assert packages == set(BELOW), "a package without a layer, or a layer without a package"
    assert modules == set(TOP_LEVEL), "a module loose at the package root"


@pytest.mark.parametrize("package", list(BELOW))
def test_packages_import_only_downward(package: str) -> None:
    allowed = BELOW[package] | SHARED | {package}
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported(path) - allowed)
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in ENTRY_POINTS and _imported(path) - allowed
    }
    assert not wrong, f"{package}/ imports upward: {wrong}"


def test_the_layers_are_an_order() -> None:
    """Each package's allowed imports sit below it in :data:`BELOW` (no two packages may import
    each other, directly or through others)."""
    order = list(BELOW)
    for package, below in BELOW.items():
        above = {other for other in below if order.index(other) >= order.index(package)}
        assert not above, f"{package} may import {above}, listed above it"


@pytest.mark.parametrize("module", list(TOP_LEVEL))
def test_root_modules_import_only_what_they_launch(module: str) -> None:
    assert _imported(ROOT / f"{module}.py") <= TOP_LEVEL[module] | {"__version__"}, module


def test_the_cli_names_only_command_modules() -> None:
    for name, spec in COMMANDS.items():
        assert spec.module.startswith("fnet_deploy.commands."), (name, spec.module)


def test_helpers_stay_below_the_layers() -> None:
    for path in (ROOT / "helpers").rglob("*.py"):
        assert _imported(path) <= {"helpers", "__version__"}, path.name


def test_export_and_runtime_never_import_each_other() -> None:
    for package, other in (("export", "runtime"), ("runtime", "export")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imported(path), f"{path.relative_to(ROOT)} imports {other}/"


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from fnet_deploy.export.parity import ImagePair\n"
        "import fnet_deploy.runtime.uri\nfrom fnet_deploy import helpers\n"
    )
    assert _imported(module) == {"export", "runtime", "helpers"}
