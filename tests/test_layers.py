"""The package's layers import downward only (the house rule, kept by a test).

Every ``fnet_deploy`` import in a module, at the top or inside a function, is read from its
syntax tree; a package may import only itself and the packages listed below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fnet_deploy

ROOT = Path(fnet_deploy.__file__).parent

BELOW: dict[str, set[str]] = {
    "model": set(),
    "data": set(),
    "metrics": {"data"},
    "backends": {"model", "data"},
    "training": {"model", "data", "metrics", "backends"},
    "export": {"model", "data", "backends"},
    "runtime": {"model", "data", "backends"},
    "bench": {"model", "data", "backends", "export"},
}
"""What each layered package may import from the package besides itself and the top-level
helpers (:data:`HELPERS`)."""

HELPERS = {
    "__version__",
    "assets",
    "atomic",
    "cuda_math",
    "errors",
    "lazy",
    "memory",
    "optional",
    "plots",
    "signals",
    "views",
}
"""Top-level modules every layer may use: they import no layered package but metrics (plots)."""
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


@pytest.mark.parametrize("package", sorted(BELOW))
def test_packages_import_only_downward(package: str) -> None:
    allowed = BELOW[package] | HELPERS | {package}
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported(path) - allowed)
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in ENTRY_POINTS and _imported(path) - allowed
    }
    assert not wrong, f"{package}/ imports upward: {wrong}"


def test_helpers_stay_below_the_layers() -> None:
    for name in HELPERS - {"__version__", "assets"}:
        assert _imported(ROOT / f"{name}.py") <= HELPERS | {"metrics"}, name


def test_export_and_runtime_never_import_each_other() -> None:
    for package, other in (("export", "runtime"), ("runtime", "export")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imported(path), f"{path.relative_to(ROOT)} imports {other}/"


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from fnet_deploy.export.parity import ImagePair\n"
        "import fnet_deploy.runtime.uri\nfrom fnet_deploy import fuse\n"
    )
    assert _imported(module) == {"export", "runtime", "fuse"}
