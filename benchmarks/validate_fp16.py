"""Validate the FP16 model against FP32 on every real pair (and extreme synthetic frames).

    python benchmarks/validate_fp16.py [--weights W] [--data DIR] [--limit N] [--device D]
        [--threads T]

For every pair of every data set under DIR (default ../shared/data: <set>/<A>/<file> with the
same file in <set>/<B>/), plus all-black, all-white and saturated-IR frames, compares the FP16
export with the FP32 export (both ONNX Runtime; the FP32 deploy form equals PyTorch to about
0.01 grey levels) and checks: no NaN/inf, and at most 2 grey levels off on >= 99.9 % of the
pixels of every pair.

``--device cpu`` (default) runs the float16 emulation of the FP16 graph (every tensor rounded to
float16; ONNX Runtime's CPU provider has no float16 Conv, so the FP16 model itself would run in
float32 there). ``--device cuda[:N]`` or ``ort-trt[:N]`` runs the FP16 model itself on the GPU
(onnxruntime-gpu). Exits 1 if any pair fails. Takes about an hour on 2 CPU cores for all 453
pairs (50 minutes with ``--threads 1``); ``--limit N`` takes the first N pairs of each set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fnet_deploy.backends.base import Runner
from fnet_deploy.backends.fp16 import float16_emulation
from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.export.onnx_graph import OnnxSpec, build_onnx, save_onnx
from fnet_deploy.export.parity import ErrorStats, ImagePair, read_pair
from fnet_deploy.helpers.errors import InputError
from fnet_deploy.model import load_fnet

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODALITIES = (("ir", "vi"), ("MRI", "CT"), ("MRI", "PET"), ("MRI", "SPECT"))


def dataset_pairs(data: Path, limit: int | None) -> list[tuple[str, Path, Path]]:
    """(name, A file, B file) for every data set folder under ``data``."""
    found = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for first, second in MODALITIES:
            if (folder / first).is_dir() and (folder / second).is_dir():
                names = sorted(p.name for p in (folder / first).iterdir() if p.is_file())
                names = [n for n in names if (folder / second / n).is_file()][:limit]
                found += [
                    (f"{folder.name}/{n}", folder / first / n, folder / second / n) for n in names
                ]
    return found


def synthetic(size: tuple[int, ...], vis: np.ndarray) -> list[ImagePair]:
    """All-black, all-white and saturated-IR (IR all white over a real visible image)."""
    black, white = np.zeros(size, np.float32), np.ones(size, np.float32)
    return [
        ImagePair("synthetic/black", black, black),
        ImagePair("synthetic/white", white, white),
        ImagePair("synthetic/saturated-ir", white, vis),
    ]


def frames(pairs: list[tuple[str, Path, Path]]) -> Iterator[ImagePair]:
    """The real pairs (unreadable or unregistered ones reported and skipped), then the
    synthetic frames at the size of the last real pair."""
    last: ImagePair | None = None
    for name, first, second in pairs:
        try:
            last = read_pair(first, second, "ycbcr", name)
        except InputError as err:
            print(f"  skipped {name}: {err}", flush=True)
            continue
        yield last
    if last is not None:
        yield from synthetic(last.vis.shape, last.vis)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=SHARED / "weights" / "FNet_official.pth")
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--limit", type=int, help="first N pairs of each data set")
    parser.add_argument("--device", default="cpu", help="cpu (emulation), cuda[:N], ort-trt[:N]")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all)")
    args = parser.parse_args()

    model, info = load_fnet(args.weights)
    pairs = dataset_pairs(args.data, args.limit)
    print(f"{len(pairs)} real pairs under {args.data}; weights {info.path.name}", flush=True)
    failures: list[str] = []
    per_set: dict[str, ErrorStats] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, fp16_path = Path(tmp) / "fnet.onnx", Path(tmp) / "fnet_fp16.onnx"
        save_onnx(build_onnx(model, OnnxSpec(), {}), fp32_path)
        fp16 = build_onnx(model, OnnxSpec(precision="fp16"), {})
        if args.device == "cpu":
            fp16 = float16_emulation(fp16)
        save_onnx(fp16, fp16_path)
        label = (
            "float16 emulation (CPU)" if args.device == "cpu" else f"FP16 model on {args.device}"
        )
        print(f"FP16 side: {label}", flush=True)
        start = time.perf_counter()
        with (
            OnnxRunner(fp32_path, intra_op_threads=args.threads) as reference,
            OnnxRunner(fp16_path, args.device, intra_op_threads=args.threads) as candidate,
        ):
            for index, pair in enumerate(frames(pairs)):
                group = per_set.setdefault(pair.name.split("/")[0], ErrorStats())
                failures += check(reference, candidate, pair, group)
                if (index + 1) % 25 == 0:
                    elapsed = time.perf_counter() - start
                    print(f"  {index + 1} frames, {elapsed:.0f} s", flush=True)
    overall = ErrorStats()
    print()
    for name, stats in per_set.items():
        overall.merge(stats)
        print(f"{name}: {stats.describe()}; {100 * stats.fraction_within(2.0):.4f} % within 2")
    print(
        f"all pixels: {overall.describe()}; within 2 grey levels: "
        f"{100 * overall.fraction_within(2.0):.4f} %; {len(failures)} failing pair(s)"
    )
    for failure in failures:
        print(f"  FAIL {failure}")
    return 1 if failures else 0


def check(reference: Runner, candidate: Runner, pair: ImagePair, total: ErrorStats) -> list[str]:
    """Compare one pair; returns a failure description, or nothing."""
    feed = pair.feed()
    stats = ErrorStats()
    stats.add(reference.infer(feed)["fused"], candidate.infer(feed)["fused"])
    total.merge(stats)
    if stats.nonfinite or stats.fraction_within(2.0) < 0.999:
        return [f"{pair.name}: {stats.describe()}"]
    return []


if __name__ == "__main__":
    sys.exit(main())
