"""Measure INT8 (Q/DQ) models against FP32 on every real pair, in grey levels.

    python benchmarks/validate_int8.py [--weights W] [--data DIR] [--limit N] [--threads T]
        [--float-layers SPEC ...] [--method max|percentile|entropy] [--json OUT]

Exports the deploy form (``fnet.onnx``), quantizes it as ``fnet-deploy export --precision int8``
does (calibrated on the shipped sample and sequence) once per ``--float-layers`` value (default: the
default mix and ``none``, every convolution in INT8), and runs every pair of every data set under
DIR (default ../shared/data) plus all-black, all-white and saturated-IR frames through the FP32
and each INT8 model on ONNX Runtime's CPU provider. Prints, per data set and model, max / mean /
p99.9 of |INT8 - FP32| in grey levels of the clamped output and the share of pixels within 2
grey levels. About 40 minutes on 2 CPU cores for all 453 pairs and two INT8 models;
``--limit N`` takes the first N pairs of each set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from validate_fp16 import SHARED, dataset_pairs, frames

from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.export.int8 import (
    CalibrationSet,
    Int8Spec,
    default_calibration_pairs,
    parse_float_layers,
    quantize_int8,
)
from fnet_deploy.export.onnx_graph import OnnxSpec, build_onnx, save_onnx
from fnet_deploy.export.parity import ErrorStats
from fnet_deploy.model import load_fnet
from fnet_deploy.model.weights import resolve_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="default: the packaged weights")
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--limit", type=int, help="first N pairs of each data set")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all)")
    parser.add_argument("--method", default="max", help="calibration: max, percentile, entropy")
    parser.add_argument(
        "--float-layers",
        action="append",
        help="one INT8 model per value ('default', 'none' or patterns; default: both)",
    )
    parser.add_argument("--json", type=Path, help="write the per-set statistics here")
    args = parser.parse_args()

    model, info = load_fnet(resolve_weights(args.weights))
    pairs = dataset_pairs(args.data, args.limit)
    calibration = CalibrationSet.of(default_calibration_pairs("ycbcr"))
    variants = args.float_layers or ["default", "none"]
    print(f"{len(pairs)} real pairs under {args.data}; weights {info.path.name}", flush=True)
    per_set: dict[str, dict[str, ErrorStats]] = {name: {} for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fnet.onnx"
        save_onnx(build_onnx(model, OnnxSpec(), {}), fp32_path)
        paths = {}
        for name in variants:
            spec = Int8Spec(
                args.method,  # type: ignore[arg-type]
                parse_float_layers(None if name == "default" else name),
            )
            quantized = quantize_int8(fp32_path, calibration, spec, model.config)
            paths[name] = Path(tmp) / f"int8_{len(paths)}.onnx"
            save_onnx(quantized.proto, paths[name])
            print(
                f"INT8 '{name}': {len(quantized.int8_layers)} convolutions in INT8 "
                f"({100 * quantized.int8_share:.1f} % of the multiply-accumulates)",
                flush=True,
            )
        runners = {
            name: OnnxRunner(path, intra_op_threads=args.threads) for name, path in paths.items()
        }
        start = time.perf_counter()
        with OnnxRunner(fp32_path, intra_op_threads=args.threads) as reference:
            for runner in runners.values():
                runner.activate()
            for index, pair in enumerate(frames(pairs)):
                feed = pair.feed()
                expected = reference.infer(feed)["fused"]
                group = pair.name.split("/")[0]
                for name, runner in runners.items():
                    stats = per_set[name].setdefault(group, ErrorStats())
                    stats.add(expected, runner.infer(feed)["fused"])
                if (index + 1) % 25 == 0:
                    print(f"  {index + 1} frames, {time.perf_counter() - start:.0f} s", flush=True)
            for runner in runners.values():
                runner.deactivate()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in variants:
        print(f"\nINT8 '{name}' vs FP32 (grey levels)")
        print("| set | max | mean | p99.9 | within 2 |")
        overall = ErrorStats()
        rows = {}
        for group, stats in [*per_set[name].items(), ("all pixels", overall)]:
            if group != "all pixels":
                overall.merge(stats)
            rows[group] = {
                "max": stats.max,
                "mean": stats.mean,
                "p99.9": stats.quantile(0.999),
                "within_2": stats.fraction_within(2.0),
                "nonfinite": stats.nonfinite,
            }
            print(
                f"| {group} | {stats.max:.2f} | {stats.mean:.3f} | {stats.quantile(0.999):.2f} "
                f"| {100 * stats.fraction_within(2.0):.3f} % |"
            )
        table[name] = rows
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
