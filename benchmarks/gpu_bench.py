"""Helpers of benchmarks/gpu_window.sh and its prepare / collect scripts: the CPU run carried to
the GPU and back, precision errors on real pairs, the layout choice, the training state's
progress, and the window's summary (results.json plus a short table).

    python benchmarks/gpu_bench.py carry-run --run runs_cpu/default --carry .gpu_carry
    python benchmarks/gpu_bench.py adopt --from UNPACKED --into runs_cpu/default
    python benchmarks/gpu_bench.py tiny-weights tiny.safetensors      # dry runs
    python benchmarks/gpu_bench.py errors --device cuda --data DIR [DIR ...] --json errors.json
    python benchmarks/gpu_bench.py choose-layout train_step.json      # prints true / false / ""
    python benchmarks/gpu_bench.py steps runs_cpu/default             # {"1": n, "2": m} as JSON
    python benchmarks/gpu_bench.py summary --work W --run R --before '{"1": 0}' --json results.json
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import platform
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fnet_deploy.backends.cuda_math import tf32_convolutions
from fnet_deploy.backends.torch_runner import Precision, TorchRunner
from fnet_deploy.data.pairs import pair_folders
from fnet_deploy.helpers.errors import FnetError
from fnet_deploy.model import FNet, ModelConfig, load_fnet
from fnet_deploy.model.deploy import to_deploy
from fnet_deploy.model.weights import packaged_weights, save_fnet
from fnet_deploy.training.checkpoint import read_train_info
from fnet_deploy.training.config import TrainConfig, load_config
from fnet_deploy.training.dataset import load_pair
from fnet_deploy.training.layout import RunLayout
from fnet_deploy.training.validation import pick_evenly

TINY = ModelConfig(filters=4, kernel_size=3, iterations=2)
"""The dry run's model (4 filters, 3 x 3 kernels, 2 iterations)."""
RUN_FILES = ("log.csv", "validation.csv", "loss_curves.png", "fnet_best.safetensors")
"""The files of a run folder carried to the GPU beside its config and state (the stage
weights are rewritten by the trainer when it needs them)."""

VARIANTS: list[tuple[str, bool, Precision, bool]] = [
    ("training form fp32 (IEEE)", False, "fp32", False),
    ("training form fp32 (TF32 convs)", False, "fp32", True),
    ("deploy form fp32 (IEEE)", True, "fp32", False),
    ("deploy form fp32 (TF32 convs)", True, "fp32", True),
    ("training form fp16", False, "fp16", False),
    ("deploy form fp16", True, "fp16", False),
]
"""name, deploy form, precision, TF32 allowed."""


def _pairs(
    folders: list[Path], per_folder: int, crop: int | None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    found = []
    for folder in folders:
        listing = pair_folders(folder / "ir", folder / "vi")
        for pair in listing.pairs[:per_folder]:
            ir, vis = load_pair(pair.ir, pair.vis)
            if crop:
                ir, vis = ir[:crop, : crop * 5 // 4], vis[:crop, : crop * 5 // 4]
            found.append((f"{folder.name}/{pair.name}", ir, vis))
    return found


def _position(run: Path) -> tuple[int, int]:
    """``(stage, iteration)`` of the furthest state saved in ``run``; ``(0, 0)`` for none."""
    found = _steps(run)
    stage = max((int(s) for s in found), default=0)
    return (stage, found[str(stage)]) if stage else (0, 0)


def _copy_pairs(source: Path, target: Path, config: TrainConfig, names: list[str] | None) -> None:
    """The ir/vis images of ``source`` (those of the pair stems ``names``, or all) into
    ``target``, replacing what was there."""
    shutil.rmtree(target, ignore_errors=True)
    for sub in (config.data.ir_dir, config.data.vis_dir):
        (target / sub).mkdir(parents=True)
        for image in sorted((source / sub).iterdir()):
            if image.is_file() and (names is None or image.stem in names):
                shutil.copy2(image, target / sub / image.name)


def carry_run(args: argparse.Namespace) -> None:
    """Copy the run folder ``--run`` (its config, log, validation record, best weights and the
    state of its current stage) into ``<carry>/run``, its training folders whole and, of a
    validation folder that is not a training folder, the pairs validation picks (the same picks:
    ``pick_evenly`` of all the pairs there is the list itself) into ``<carry>/data/<name>``, and
    write ``<carry>/train_args``: the ``fnet-deploy train`` options, one a line, that point the
    resumed run at the carried data (and ``--stage 2`` when only the stage-II state travels)."""
    layout = RunLayout(args.run)
    if not layout.config.is_file():
        raise FnetError(f"{args.run} holds no run to carry (no config.toml)")
    config = load_config(layout.config)
    carry: Path = args.carry
    target = RunLayout(carry / "run")
    for _ in range(3):  # the CPU run may save while we copy: copy again until it did not
        before = _position(args.run)
        if before == (0, 0):
            raise FnetError(f"{args.run} holds no training state to carry")
        shutil.rmtree(target.out, ignore_errors=True)
        (target.out / "state").mkdir(parents=True)
        shutil.copy2(layout.state(before[0]), target.state(before[0]))
        for name in ("config.toml", *RUN_FILES):
            if (args.run / name).is_file():
                shutil.copy2(args.run / name, target.out / name)
        if _position(target.out) == before == _position(args.run):
            break
    else:
        raise FnetError(f"{args.run} kept changing while it was copied; try again")
    train_args: list[str] = ["--stage", "2"] if before[0] == 2 else []
    carried: dict[str, Path] = {}
    training = {Path(folder).resolve() for folder in config.data.folders}
    for option, folders in (("--data", config.data.folders), ("--val-data", config.val.folders)):
        for folder in map(Path, folders):
            place = carry / "data" / folder.name
            if carried.setdefault(folder.name, folder.resolve()) != folder.resolve():
                raise FnetError(f"two data folders are called {folder.name}: cannot carry both")
            if not place.is_dir() or option == "--data":
                picked = None
                if folder.resolve() not in training:
                    listing = pair_folders(
                        folder / config.data.ir_dir, folder / config.data.vis_dir
                    )
                    picked = pick_evenly([p.name for p in listing.pairs], config.val.pairs)
                _copy_pairs(folder, place, config, picked)
            train_args += [option, str(place)]
    (carry / "train_args").write_text("".join(f"{arg}\n" for arg in train_args))
    stage, step = before
    print(f"carried {args.run} (stage {stage}, iteration {step}) into {target.out}")


def adopt(args: argparse.Namespace) -> None:
    """Put a run that came back from the GPU (``--from``: its files unpacked, states under
    ``state/``) into ``--into`` if and only if it is further on (stage, iteration) than the
    state there now: every file that came back except ``config.toml`` (the run goes on with its
    own config, on its own device); otherwise nothing changes. Refused while a process trains
    into ``--into`` (it would overwrite the states at its next checkpoint)."""
    source, into = args.source, args.into
    came, here = _position(source), _position(into)
    if came <= here:
        print(
            f"kept {into}: it is at stage {here[0]} iteration {here[1]}, the GPU run came back "
            f"at stage {came[0]} iteration {came[1]} (not ahead)"
        )
        return
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = proc.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in words and b"--out" in words:
            out = words[words.index(b"--out") + 1].decode(errors="replace")
            if Path(out).resolve() == into.resolve():
                raise FnetError(
                    f"process {proc.parent.name} trains into {into}: stop it (SIGTERM saves), "
                    "then collect again; it resumes from the GPU's state when restarted"
                )
    (into / "state").mkdir(parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != "config.toml":
            target = into / path.relative_to(source)
            shutil.copyfile(path, target)  # not copy2: the source may be read-only
    print(
        f"adopted the GPU run into {into}: stage {here[0]} iteration {here[1]} -> stage "
        f"{came[0]} iteration {came[1]}"
    )


def tiny_weights(args: argparse.Namespace) -> None:
    """Seeded random weights of the dry run's tiny model (:data:`TINY`)."""
    torch.manual_seed(0)
    save_fnet(args.path, FNet(TINY), provenance="seeded random weights for gpu_window dry runs")


def errors(args: argparse.Namespace) -> None:
    """Each variant's output against the float64 training form, in grey levels of the clamped
    8-bit image: max, mean and 99.9th percentile over all pixels of all pairs."""
    device = torch.device(args.device)
    weights = args.weights or packaged_weights()
    if weights is None:
        raise FnetError("no --weights given and the package ships no default weights")
    model = load_fnet(weights)[0]
    pairs = _pairs(args.data, args.pairs, args.crop)
    reference = copy.deepcopy(model).double().to(device).eval()
    references = []
    with torch.no_grad(), tf32_convolutions(False):
        for _, ir, vis in pairs:
            ref = reference(
                torch.from_numpy(ir).double()[None, None].to(device),
                torch.from_numpy(vis).double()[None, None].to(device),
            )
            references.append(np.clip(ref[0, 0].cpu().numpy(), 0, 1))
    diffs: dict[str, list[np.ndarray]] = {name: [] for name, *_ in VARIANTS}
    skipped: dict[str, str] = {}
    for name, deploy, precision, tf32 in VARIANTS:
        if device.type != "cuda" and (precision == "fp16" or tf32):
            skipped[name] = "needs CUDA"
            continue
        form = to_deploy(copy.deepcopy(model).float()) if deploy else copy.deepcopy(model).float()
        with tf32_convolutions(tf32), TorchRunner(form, str(device), precision) as runner:
            for (_, ir, vis), ref in zip(pairs, references, strict=True):
                out = runner.infer({"ir": ir[None, None], "vis": vis[None, None]})["fused"]
                diffs[name].append(255.0 * np.abs(np.clip(out[0, 0], 0, 1) - ref).ravel())
    table = {}
    for name, parts in diffs.items():
        if parts:
            grey = np.concatenate(parts)
            table[name] = {
                "max": float(grey.max()),
                "mean": float(grey.mean()),
                "p99.9": float(np.percentile(grey, 99.9)),
            }
    document = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "weights": str(weights),
        "reference": "training form in float64 on the same device, IEEE convolutions",
        "pairs": [name for name, _, _ in pairs],
        "grey_levels": table,
        "skipped": skipped,
    }
    args.json.write_text(json.dumps(document, indent=2))
    for name, row in table.items():
        print(f"{name:34} max {row['max']:.4f}  mean {row['mean']:.5f}  p99.9 {row['p99.9']:.4f}")


def choose_layout(args: argparse.Namespace) -> None:
    """``true`` when the NHWC step (``nhwc``) beats the NCHW one (``eager``) by 3 % over both
    stages, ``false`` when it does not, empty when the benchmark did not time both. These are
    the eager steps: the carried CPU recipe's warm-up and cosine schedule rule out a CUDA graph
    (a graph needs a constant learning rate)."""
    try:
        rows = json.loads(args.train_step.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        print("")
        return
    total: dict[str, float] = {}
    stages: dict[str, set[int]] = {}
    for row in rows:
        total[row["variant"]] = total.get(row["variant"], 0.0) + row["seconds"]
        stages.setdefault(row["variant"], set()).add(row["stage"])
    if stages.get("eager") != stages.get("nhwc") or "eager" not in total:
        print("")
        return
    print("true" if total["nhwc"] < 0.97 * total["eager"] else "false")


def _steps(run: Path) -> dict[str, int]:
    found = {}
    for stage in (1, 2):
        path = run / "state" / f"stage{stage}.safetensors"
        if path.is_file():
            found[str(stage)] = int(read_train_info(path)["step"])
    return found


def steps(args: argparse.Namespace) -> None:
    """Iterations saved per stage in a run folder, as JSON."""
    print(json.dumps(_steps(args.run)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _training(run: Path, before: dict[str, int]) -> dict[str, Any]:
    """What the window's training did, from the run's state files and log."""
    after = _steps(run)
    config = load_config(run / "config.toml") if (run / "config.toml").is_file() else None
    if "2" in after and "1" not in after:  # only stage II's state travelled: stage I is done
        before = {"1": config.iterations(1) if config else 0} | before
        after["1"] = before["1"]
    rows: list[dict[str, str]] = []
    if (run / "log.csv").is_file():
        with (run / "log.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    stages: dict[str, dict[str, Any]] = {}
    for stage in ("1", "2"):
        start, end = before.get(stage, 0), after.get(stage, 0)
        window = [
            r
            for r in rows
            if r["stage"] == stage and start < int(r["step"]) <= end and r["sec_per_iter"]
        ]
        total = config.iterations(int(stage)) if config else 20_000
        seconds = [float(r["sec_per_iter"]) for r in window]
        stages[stage] = {
            "iterations_before": start,
            "iterations_after": end,
            "iterations_this_window": end - start,
            "of_recipe": end / total,
            "median_sec_per_iter": statistics.median(seconds) if seconds else None,
            "last_loss": float(window[-1]["loss"]) if window else None,
        }
    recipe = sum(v["iterations_after"] for v in stages.values()) / (
        (config.stage1.iterations + config.stage2.iterations) if config else 40_000
    )
    return {"stages": stages, "recipe_done": recipe, "config": config.to_dict() if config else None}


def summary(args: argparse.Namespace) -> None:
    """Gather the window's parts into one JSON document and print a short table."""
    work: Path = args.work
    parts = []
    if (work / "parts.tsv").is_file():
        for line in (work / "parts.tsv").read_text().splitlines():
            name, rc, seconds = line.split("\t")
            parts.append({"part": name, "exit": int(rc), "seconds": int(seconds)})
    document = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "nvidia_smi": (work / "nvidia-smi.txt").read_text()
            if (work / "nvidia-smi.txt").is_file()
            else None,
        },
        "parts": parts,
        "train_step": _read_json(work / "train_step.json"),
        "bench": _read_json(work / "bench.json"),
        "compile": _read_json(work / "compile.json"),
        "errors": _read_json(work / "errors.json"),
        "training": _training(args.run, json.loads(args.before or "{}")),
    }
    args.json.write_text(json.dumps(document, indent=2))
    print("\n== GPU window summary ==")
    print(f"gpu: {document['machine']['gpu']}, torch {torch.__version__}")
    for part in parts:
        print(f"part {part['part']:8} exit {part['exit']:3}  {part['seconds']:4d} s")
    for row in (document["train_step"] or {}).get("rows", []):
        print(
            f"step {row['variant']:11} stage {row['stage']} {row['crop']}x{row['batch']}: "
            f"{1e3 * row['seconds']:.2f} ms/iter"
        )
    for source in ("bench", "compile"):
        for cell in (document[source] or {}).get("results", []):
            if cell.get("median_ms") is None:
                continue
            device_ms = cell.get("device_median_ms")
            print(
                f"{cell['backend']:24} {cell['precision']} {cell['height']}x{cell['width']} "
                f"b{cell['batch']}: {cell['median_ms']:.2f} ms end to end, "
                f"{'-' if device_ms is None else f'{device_ms:.2f}'} ms on device, "
                f"{cell['fps']:.0f} fps"
            )
    for name, row in ((document["errors"] or {}).get("grey_levels") or {}).items():
        print(f"error {name:32} max {row['max']:.4f} mean {row['mean']:.5f} grey levels")
    training = document["training"]
    for stage, row in training["stages"].items():
        per = row["median_sec_per_iter"]
        print(
            f"stage {stage}: {row['iterations_before']} -> {row['iterations_after']} iterations "
            f"({100 * row['of_recipe']:.1f} % of the stage), "
            f"{'-' if per is None else f'{1e3 * per:.1f}'} ms/iter, last loss {row['last_loss']}"
        )
    print(f"recipe done: {100 * training['recipe_done']:.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    carry = commands.add_parser("carry-run", help=carry_run.__doc__)
    carry.add_argument("--run", type=Path, required=True)
    carry.add_argument("--carry", type=Path, required=True)
    back = commands.add_parser("adopt", help=adopt.__doc__)
    back.add_argument("--from", dest="source", type=Path, required=True)
    back.add_argument("--into", type=Path, required=True)
    tiny = commands.add_parser("tiny-weights", help=tiny_weights.__doc__)
    tiny.add_argument("path", type=Path)
    err = commands.add_parser("errors", help=errors.__doc__)
    err.add_argument("--device", default="cuda")
    err.add_argument("--weights", type=Path, help="default: the packaged weights")
    err.add_argument("--data", type=Path, nargs="+", required=True)
    err.add_argument("--pairs", type=int, default=6, help="pairs per data folder")
    err.add_argument("--crop", type=int, help="crop each pair to CROP x 1.25 CROP (dry runs)")
    err.add_argument("--json", type=Path, required=True)
    layout = commands.add_parser("choose-layout", help=choose_layout.__doc__)
    layout.add_argument("train_step", type=Path)
    state = commands.add_parser("steps", help=steps.__doc__)
    state.add_argument("run", type=Path)
    gather = commands.add_parser("summary", help=summary.__doc__)
    gather.add_argument("--work", type=Path, required=True)
    gather.add_argument("--run", type=Path, required=True)
    gather.add_argument("--before", help="steps JSON before the window")
    gather.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    try:
        {
            "carry-run": carry_run,
            "adopt": adopt,
            "tiny-weights": tiny_weights,
            "errors": errors,
            "choose-layout": choose_layout,
            "steps": steps,
            "summary": summary,
        }[args.command](args)
    except FnetError as err:
        parser.exit(2, f"{err}\n")


if __name__ == "__main__":
    main()
