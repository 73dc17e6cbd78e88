"""Time FNet's training form, deploy form and ONNX Runtime exports at one resolution, in one run.

    python benchmarks/bench_export.py [--weights W] [--size 480x640] [--repeat 2] [--json F]

Variants (all float32, batch 1, on this machine's CPU):

- ``torch eager, training form``: the reference, ``FNet`` as trained (62 convolutions);
- ``torch eager, deploy form``: scalars folded, convolutions merged (30 convolutions);
- ``torch eager, deploy form + merged encoders``: also all W_k e of a block in one convolution;
- ``torch eager, deploy form + col2im``: the convolutions with few outputs as taps + fold;
- ``ORT, training form``: the training form exported as it is (what ONNX Runtime alone buys);
- ``ORT, deploy form``: ``fnet.onnx`` as ``fnet-deploy export`` writes it;
- ``ORT, deploy form + merged encoders``;
- ``ORT, deploy form + col2im``: ``fnet-deploy export --col2im`` (ONNX Runtime CPU only);
- ``ORT, FP16 model``: ``fnet_fp16.onnx``; on CPU, ONNX Runtime runs most of it in float32 with
  casts (no float16 Conv on x86), so this row is for information, not a float16 speed.

Each variant runs once to warm up, then ``--repeat`` timed runs; the table gives the median, the
speed-up over the training form in eager PyTorch, and the largest difference from it in grey
levels. The input is a real MSRS pair when ../shared/data is present (timing does not depend on
content).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from fnet_deploy.export.onnx_graph import (
    OnnxSpec,
    build_onnx,
    exporter_description,
    quiet_exporter,
)
from fnet_deploy.export.parity import ErrorStats, read_pair
from fnet_deploy.model import FNet, load_fnet
from fnet_deploy.model.deploy import DeployOptions, to_deploy

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "FNet_official.pth"
REAL_PAIR = SHARED / "data" / "MSRS_test"


def median_seconds(run: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    """Median wall time of ``repeat`` calls after one warm-up call, and the last output."""
    out = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def training_form_onnx(model: FNet, opset: int) -> onnx.ModelProto:
    """The training form exported with the same pinned exporter path, no rewrites."""
    example = (torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))  # distinct tensors: no aliasing
    dims = {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    shapes = {"ir": dims, "vis": dict(dims)}
    with quiet_exporter(), torch.no_grad():
        program = torch.export.export(model, example, dynamic_shapes=shapes, strict=False)
        exported = torch.onnx.export(
            program,
            example,
            dynamic_shapes=shapes,
            input_names=["ir", "vis"],
            output_names=["fused"],
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    assert exported is not None
    return exported.model_proto


def inputs(height: int, width: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A 1 x 1 x H x W real pair (resized) if the shared data is here, else smooth noise."""
    names = sorted((REAL_PAIR / "ir").glob("*.png")) if REAL_PAIR.is_dir() else []
    if names:
        pair = read_pair(names[0], REAL_PAIR / "vi" / names[0].name, "ycbcr").resized(height, width)
        feed = pair.feed()
        return feed["ir"], feed["vis"], f"MSRS_test/{names[0].name}"
    rng = np.random.default_rng(0)
    ir, vis = (rng.random((1, 1, height, width), dtype=np.float32) for _ in range(2))
    return ir, vis, "random noise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--size", default="480x640", help="HxW")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per variant")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))

    model, info = load_fnet(args.weights)
    ir, vis, source = inputs(height, width)
    ir_t, vis_t = torch.from_numpy(ir), torch.from_numpy(vis)
    print(
        f"{height}x{width}, input {source}, weights {info.path.name}; {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{ort.__version__}; exporter: {exporter_description()}"
    )

    def torch_run(module: torch.nn.Module) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with torch.inference_mode():
                return module(ir_t, vis_t).numpy()

        return run

    merged = DeployOptions(merge_encoders=True)
    taps = DeployOptions(col2im=True)
    variants: list[tuple[str, Callable[[], Callable[[], np.ndarray]]]] = [
        ("torch eager, training form", lambda: torch_run(model)),
        ("torch eager, deploy form", lambda: torch_run(to_deploy(model))),
        ("torch eager, deploy form + merged encoders", lambda: torch_run(to_deploy(model, merged))),
        ("torch eager, deploy form + col2im", lambda: torch_run(to_deploy(model, taps))),
    ]
    protos: dict[str, Callable[[], onnx.ModelProto]] = {
        "ORT, training form": lambda: training_form_onnx(model, 18),
        "ORT, deploy form": lambda: build_onnx(model, OnnxSpec(), {}),
        "ORT, deploy form + merged encoders": lambda: build_onnx(
            model, OnnxSpec(options=merged), {}
        ),
        "ORT, deploy form + col2im": lambda: build_onnx(model, OnnxSpec(options=taps), {}),
        "ORT, FP16 model (CPU: mostly float32 + casts)": lambda: build_onnx(
            model, OnnxSpec(precision="fp16"), {}
        ),
    }

    with tempfile.TemporaryDirectory() as tmp:

        def ort_run(make: Callable[[], onnx.ModelProto]) -> Callable[[], np.ndarray]:
            path = Path(tmp) / f"{len(os.listdir(tmp))}.onnx"
            path.write_bytes(make().SerializeToString())
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feed = {"ir": ir, "vis": vis}
            return lambda: np.asarray(session.run(["fused"], feed)[0])

        for name, make in protos.items():
            variants.append((name, lambda make=make: ort_run(make)))  # type: ignore[misc]

        results = []
        reference: np.ndarray | None = None
        baseline = 0.0
        for name, prepare in variants:
            seconds, out = median_seconds(prepare(), args.repeat)
            if reference is None:
                reference, baseline = out, seconds
            stats = ErrorStats()
            stats.add(reference, out)
            results.append(
                {
                    "variant": name,
                    "seconds": seconds,
                    "speedup": baseline / seconds,
                    "max_grey_levels": stats.max,
                }
            )
            print(f"  {name}: {seconds:.2f} s ({baseline / seconds:.2f}x)", flush=True)

    print(f"\n| variant ({height}x{width}, float32) | median s | vs eager | max diff (grey) |")
    print("|---|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['variant']} | {row['seconds']:.2f} | {row['speedup']:.2f}x | "
            f"{row['max_grey_levels']:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"size": [height, width], "results": results}, indent=2))


if __name__ == "__main__":
    main()
