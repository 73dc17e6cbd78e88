"""Seconds per training iteration of the full-size FNet, per stage, crop, batch and step variant.

One iteration is what the trainer does per step (:class:`fnet_deploy.training.step.TrainStep`):
forward, loss, backward, Adam step and EMA update (stage I: FNet + IFNet on the inverse-fusion
loss; stage II: FNet on the fusion loss). Inputs are random crops (the cost does not depend on
the content); ``--data`` also times cutting a batch from the cached set on the device. Variants:

- ``eager``: the step without a graph, FNet's convolutions by PyTorch (``speed.conv=native``);
- ``nhwc``: the same with channels_last activations;
- ``tap`` / ``tap-nhwc``: the convolutions in tap-GEMM form (``speed.conv=tap``, the CPU
  default), without and with channels_last;
- ``graph`` / ``graph-nhwc``: captured in a CUDA graph after the warm-up (CUDA only);
- ``bf16`` / ``graph-bf16``: bf16 autocast over forward and loss (opt-in in the trainer);
- ``plain``: the loop the trainer ran before the static-buffer step (a fresh batch tensor per
  step, zero_grad / backward / step / EMA update written out), for comparison.

Prints a table and the hours 20,000 iterations per stage would take, each variant's speed-up
over ``eager`` and the FLOP rate it reaches against the machine's measured matrix-product peak;
``--shapes`` also times each convolution shape alone (forward and both gradients, native vs
tap). ``--json`` writes the numbers (with the variant, device, torch version and TF32 setting).
Variants are timed round-robin, one iteration each in turn, so a change of load hits them alike.

    python benchmarks/bench_train_step.py --sizes 128x2 128x4 --variants eager tap tap-nhwc --shapes
    python benchmarks/bench_train_step.py --sizes 64x4 128x1 --repeats 2
    python benchmarks/bench_train_step.py --device cuda --sizes 128x16 --repeats 20 \\
        --variants eager nhwc graph graph-nhwc
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fnet_deploy.backends.cuda_math import tf32_allowed, tf32_convolutions
from fnet_deploy.model import FNet, IFNet
from fnet_deploy.model.tap_conv import ConvForm, conv2d_tap, set_conv_form
from fnet_deploy.training.batches import CachedCrops, DeviceImages
from fnet_deploy.training.config import DataConfig, OptimConfig, StepPrecision
from fnet_deploy.training.dataset import CropStream, StepBatches, scan_pairs
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss, stage_two_loss
from fnet_deploy.training.stage import InverseFusion
from fnet_deploy.training.step import TrainStep, make_adam

VARIANTS: dict[str, tuple[bool, bool, StepPrecision, ConvForm]] = {
    "eager": (False, False, "fp32", "native"),
    "nhwc": (False, True, "fp32", "native"),
    "tap": (False, False, "fp32", "tap"),
    "tap-nhwc": (False, True, "fp32", "tap"),
    "graph": (True, False, "fp32", "native"),
    "graph-nhwc": (True, True, "fp32", "native"),
    "bf16": (False, False, "bf16", "native"),
    "graph-bf16": (True, False, "bf16", "native"),
}
"""variant -> (CUDA graph, channels_last, precision, convolution form); ``plain`` is timed
separately."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    stage: int, crop: int, batch: int, device: torch.device, variant: str
) -> Callable[[], None]:
    """One training iteration of ``variant`` (stage, crop and batch as given), ready to call."""
    torch.manual_seed(0)
    fnet = FNet().to(device)
    net: torch.nn.Module = InverseFusion(fnet, IFNet().to(device)) if stage == 1 else fnet
    shape = (batch, 1, crop, crop)

    def loss(ir: Tensor, vis: Tensor) -> LossTerms:
        if stage == 1:
            ir_hat, vis_hat = net(ir, vis)
            return stage_one_loss(ir, vis, ir_hat, vis_hat)
        return stage_two_loss(ir, vis, net(ir, vis))

    if variant == "plain":
        optimizer = make_adam(net.parameters(), OptimConfig(), capturable=False)
        ema = ModelEMA(fnet, 0.999)

        def plain_step() -> None:
            ir = torch.rand(shape).to(device)
            vis = torch.rand(shape).to(device)
            total = loss(ir, vis).total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            ema.update(fnet, 1)
            float(total.detach())

        return plain_step
    graph, channels_last, precision, form = VARIANTS[variant]
    if graph and device.type != "cuda":
        raise ValueError(f"variant {variant} needs a CUDA device")
    set_conv_form(net, form)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = make_adam(net.parameters(), OptimConfig(), capturable=graph)
    runner = TrainStep(
        loss,
        optimizer,
        ModelEMA(fnet, 0.999),
        fnet,
        shape,
        device,
        graph=graph,
        channels_last=channels_last,
        precision=precision,
    )

    def step() -> None:
        # Drawn on the device: the trainer cuts its batches there too (no host copy).
        runner.ir.copy_(torch.rand(shape, device=device))
        runner.vis.copy_(torch.rand(shape, device=device))
        runner.run(0.001).tolist()

    return step


def time_round_robin(
    steps: dict[str, Callable[[], None]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each step after its warm-up (and capture, for graphs), the
    steps called in turn, one call each per round."""
    warmup = 5 if device.type == "cuda" else 1
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def conv_flops(stage: int, crop: int, batch: int) -> float:
    """Floating-point operations of the convolutions of one iteration: 3 x the forward pass
    (forward, input and weight gradients), counted from the model's convolution shapes."""
    fnet = FNet()
    net: torch.nn.Module = InverseFusion(fnet, IFNet()) if stage == 1 else fnet
    total = 0.0
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * module.in_channels * module.out_channels * k * crop * crop * batch
    return 3.0 * total


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matrix-product rate (FLOP/s) of a size x size product on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / sorted(times)[repeats // 2]


SHAPES = ((64, 1), (64, 2), (1, 64), (2, 64))
"""(in, out) channels of FNet's 9x9 convolutions."""


def time_shapes(crop: int, batch: int, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    """Forward + both gradients of each 9x9 convolution shape, native vs tap, in turn."""
    rows = []
    for c_in, c_out in SHAPES:
        x = torch.rand(batch, c_in, crop, crop, device=device, requires_grad=True)
        w = torch.randn(c_out, c_in, 9, 9, device=device, requires_grad=True)
        g = torch.randn(batch, c_out, crop, crop, device=device)

        def native(x: Tensor = x, w: Tensor = w, g: Tensor = g) -> None:
            torch.nn.functional.conv2d(x, w, padding=4).backward(g)

        def tap(x: Tensor = x, w: Tensor = w, g: Tensor = g) -> None:
            conv2d_tap(x, w).backward(g)

        seconds = time_round_robin({"native": native, "tap": tap}, repeats, device)
        flops = 3 * 2.0 * c_in * c_out * 81 * crop * crop * batch
        rows.append(
            {"shape": f"{c_in}->{c_out}", "crop": crop, "batch": batch, "flops": flops}
            | {f"{name}_seconds": value for name, value in seconds.items()}
        )
    return rows


def time_batches(
    data: list[Path], crop: int, batch: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds to produce one batch: cut on the device from the cached set, and the
    DataLoader way (CropStream items collated on the host, then copied)."""
    scan = scan_pairs(DataConfig(folders=tuple(map(str, data)), crop=crop))
    stream = CropStream(scan, crop, seed=0, stage=1)
    steps = StepBatches(0, repeats + 1, batch)
    crops = CachedCrops(DeviceImages(scan.images, device), stream, steps)
    ir = torch.empty(batch, 1, crop, crop, device=device)
    vis = torch.empty_like(ir)
    cut, collate = [], []
    for step in range(repeats + 1):
        start = time.perf_counter()
        crops.fill(step, ir, vis)
        _sync(device)
        cut.append(time.perf_counter() - start)
        start = time.perf_counter()
        items = [stream[i] for i in steps.indices(step)]
        ir.copy_(torch.stack([a for a, _ in items]))
        vis.copy_(torch.stack([b for _, b in items]))
        _sync(device)
        collate.append(time.perf_counter() - start)
    return {
        "cut_on_device": sorted(cut[1:])[repeats // 2],
        "dataloader_items": sorted(collate[1:])[repeats // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x4", "128x1"], help="CROPxBATCH")
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=["eager"], choices=[*VARIANTS, "plain"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20_000, help="for the estimate")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-tf32", action="store_true", help="IEEE float32 convolutions")
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="also time batches")
    parser.add_argument("--json", type=Path, help="write the results here (after every row)")
    parser.add_argument(
        "--shapes", action="store_true", help="also time each 9x9 convolution shape alone"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    math_mode = tf32_convolutions(not args.no_tf32) if cuda else contextlib.nullcontext()
    with math_mode:
        name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
        document: dict[str, Any] = {
            "torch": torch.__version__,
            "device": str(device),
            "device_name": name,
            "threads": torch.get_num_threads(),
            "tf32_convolutions": cuda and tf32_allowed(),
            "rows": [],
            "batches": {},
        }

        def save() -> None:
            if args.json:
                args.json.write_text(json.dumps(document, indent=2))

        print(
            f"torch {torch.__version__}, {device} ({name}), {torch.get_num_threads()} threads"
            f", TF32 convolutions {'on' if document['tf32_convolutions'] else 'off'}"
        )
        peak = matmul_peak(device)
        document["matmul_peak_gflops"] = peak / 1e9
        print(f"measured matrix-product peak: {peak / 1e9:.1f} GFLOP/s (float32, 2048^3)")
        if args.shapes:
            crop, batch = (int(v) for v in args.sizes[0].lower().split("x"))
            print(f"9x9 convolutions alone, forward + both gradients, {crop}x{crop} x {batch}:")
            for row in time_shapes(crop, batch, max(args.repeats, 5), device):
                document.setdefault("shapes", []).append(row)
                save()
                native, tap = row["native_seconds"], row["tap_seconds"]
                print(
                    f"  {row['shape']:>6}: native {1e3 * native:7.2f} ms, tap {1e3 * tap:7.2f} ms"
                    f" (x{native / tap:.2f}; tap {row['flops'] / tap / 1e9:.1f} GFLOP/s)",
                    flush=True,
                )
        print(
            f"{'variant':>11} {'stage':>5} {'crop':>5} {'batch':>5} {'ms/iter':>9} "
            f"{'h per ' + str(args.iterations):>12} {'vs eager':>9} {'GFLOP/s':>8} {'of peak':>8}"
        )
        variants = [v for v in args.variants if cuda or not v.startswith("graph")]
        for size in args.sizes:
            crop, batch = (int(v) for v in size.lower().split("x"))
            for stage in args.stages:
                steps = {v: make_step(stage, crop, batch, device, v) for v in variants}
                seconds = time_round_robin(steps, args.repeats, device)
                flops = conv_flops(stage, crop, batch)
                for variant in variants:
                    row = {"variant": variant, "stage": stage, "crop": crop, "batch": batch}
                    rate = flops / seconds[variant]
                    row |= {"seconds": seconds[variant], "conv_gflops_per_s": rate / 1e9}
                    document["rows"].append(row)
                    save()
                    hours = seconds[variant] * args.iterations / 3600
                    ratio = (
                        f"x{seconds['eager'] / seconds[variant]:.2f}" if "eager" in seconds else "-"
                    )
                    print(
                        f"{variant:>11} {stage:>5} {crop:>5} {batch:>5} "
                        f"{1e3 * seconds[variant]:>9.2f} {hours:>12.2f} {ratio:>9} "
                        f"{rate / 1e9:>8.1f} {100 * rate / peak:>7.0f}%",
                        flush=True,
                    )
        if args.data:
            crop, batch = (int(v) for v in args.sizes[0].lower().split("x"))
            batches = time_batches(args.data, crop, batch, max(args.repeats, 5), device)
            document["batches"] = batches
            save()
            print(
                "batch of "
                + args.sizes[0]
                + ": "
                + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in batches.items())
            )


if __name__ == "__main__":
    main()
