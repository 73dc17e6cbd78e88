"""The declared dependencies agree with the code: extras, the Jetson list, the torch floor."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from packaging.requirements import Requirement

from fnet_deploy.export.onnx_graph import MIN_TORCH
from fnet_deploy.helpers.optional import EXTRAS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
JETSON_LEFT_OUT = {"torch", "opencv-python-headless"}


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in lines]
    return {req.name.lower(): req for req in parsed}


def _extra(name: str) -> set[str]:
    """Package names an extra installs, self-references (``fnet-deploy[...]``) expanded."""
    names: set[str] = set()
    for line in PROJECT["optional-dependencies"][name]:
        req = Requirement(line)
        if req.name == PROJECT["name"]:
            for inner in req.extras:
                names |= _extra(inner)
        else:
            names.add(req.name.lower())
    return names


def test_jetson_requirements_are_the_base_dependencies_without_torch_and_opencv() -> None:
    base = _requirements(PROJECT["dependencies"])
    lines = (ROOT / "requirements" / "jetson.txt").read_text().splitlines()
    jetson = _requirements([line for line in lines if line.strip() and not line.startswith("#")])
    assert set(jetson) == set(base) - JETSON_LEFT_OUT
    for name, req in jetson.items():
        assert req.marker == base[name].marker, name
        # Every bound of pyproject.toml holds on the Jetson too; the list may only add bounds.
        assert set(base[name].specifier) <= set(req.specifier), name


def test_every_optional_package_is_in_the_extras_its_errors_name() -> None:
    for module, (package, (usual, *others)) in EXTRAS.items():
        assert package in _extra(usual), (module, usual)
        for extra in others:  # another build of the same module: onnxruntime-gpu
            assert any(name.startswith(f"{package}-") for name in _extra(extra)), (module, extra)


def test_the_gpu_extra_does_not_pull_the_cpu_onnxruntime() -> None:
    assert "onnxruntime" not in _extra("onnx-gpu")
    assert "onnxruntime-gpu" not in _extra("onnx")
    assert _extra("onnx") - {"onnxruntime"} == _extra("onnx-gpu") - {"onnxruntime-gpu"}


def test_torch_floor_is_the_exporter_pinned_by_the_code() -> None:
    torch_req = _requirements(PROJECT["dependencies"])["torch"]
    assert {(spec.operator, spec.version) for spec in torch_req.specifier} == {(">=", MIN_TORCH)}


def _imported_top_levels(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.partition(".")[0])
    return names


def test_test_only_packages_are_dev_dependencies_only() -> None:
    package_imports = _imported_top_levels(ROOT / "fnet_deploy")
    assert "sklearn" in _imported_top_levels(ROOT / "tests")
    assert "sklearn" not in package_imports
    base = set(_requirements(PROJECT["dependencies"]))
    assert "scikit-learn" not in base
    assert "scikit-learn" in _extra("dev")


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports outside ``if TYPE_CHECKING:`` blocks."""
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            type_only |= {id(inner) for child in node.body for inner in ast.walk(child)}
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in type_only
    ]


def test_optional_packages_are_imported_only_through_require() -> None:
    """A plain ``import onnx`` would bypass the one-line error. Exceptions: type-only imports,
    and the modules built on ONNX itself, which are imported only after ``require("onnx")``."""
    allowed = {"export/onnx_graph.py", "backends/fp16.py"}
    offenders = []
    for path in sorted((ROOT / "fnet_deploy").rglob("*.py")):
        relative = path.relative_to(ROOT / "fnet_deploy").as_posix()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = [node.module or ""] if node.level == 0 else []
            for module in modules:
                if module.partition(".")[0] in EXTRAS and relative not in allowed:
                    offenders.append(f"{relative}:{node.lineno}: {module}")
    assert offenders == []
