"""Installed size of fnet-deploy's base dependencies and of each extra, in this environment.

Follows the requirement closure of the installed distributions (markers evaluated for this
interpreter) from ``fnet-deploy`` itself, and from each of its extras, and adds up the sizes of
the files each distribution recorded at install time (``RECORD``). Only what is installed is
counted: run it in an environment with the extras you want measured installed. Prints one line
per group (the packages the group adds to the base, and their size) and the largest packages.

    python benchmarks/install_size.py [--json sizes.json]
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = "fnet-deploy"


def _name(text: str) -> str:
    return text.lower().replace("_", "-").replace(".", "-")


def _installed() -> dict[str, metadata.Distribution]:
    return {_name(dist.metadata["Name"]): dist for dist in metadata.distributions()}


def closure(
    dists: dict[str, metadata.Distribution],
    name: str,
    extras: frozenset[str] = frozenset(),
    missing: set[str] | None = None,
) -> set[str]:
    """The installed distributions ``name`` (with ``extras``) needs, itself included; the
    names of required distributions that are not installed are added to ``missing``."""
    found: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(_name(name), extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        current, wanted = todo.pop()
        if current not in dists and missing is not None:
            missing.add(current)
        if (current, wanted) in seen or current not in dists:
            continue
        seen.add((current, wanted))
        found.add(current)
        for text in dists[current].requires or []:
            req = Requirement(text)
            envs = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((_name(req.name), frozenset(req.extras)))
    return found


def size_bytes(dist: metadata.Distribution) -> int:
    """Bytes of the files ``dist`` installed (as its RECORD lists them)."""
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dists = _installed()
    if ROOT not in dists:
        raise SystemExit(f"{ROOT} is not installed in this environment")
    sizes = {name: size_bytes(dist) for name, dist in dists.items()}
    base = closure(dists, ROOT) - {ROOT}
    extras = sorted(dists[ROOT].metadata.get_all("Provides-Extra") or [])
    report: dict[str, dict[str, object]] = {
        "base": {"packages": sorted(base), "mb": sum(sizes[n] for n in base) / 1e6}
    }
    for extra in extras:
        absent: set[str] = set()
        added = closure(dists, ROOT, frozenset({extra}), absent) - base - {ROOT}
        report[extra] = {
            "packages": sorted(added),
            "mb": sum(sizes[n] for n in added) / 1e6,
            "not_installed": sorted(absent),
        }
    for group, values in report.items():
        names, absent_names = values["packages"], values.get("not_installed", [])
        assert isinstance(names, list) and isinstance(absent_names, list)
        note = f"; not installed here: {', '.join(absent_names)}" if absent_names else ""
        print(f"{group:>12}: {values['mb']:8.1f} MB  ({len(names)} packages{note})")
    print("largest base packages:")
    for name in sorted(base, key=lambda n: -sizes[n])[:8]:
        print(f"  {name:>28}: {sizes[name] / 1e6:7.1f} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
