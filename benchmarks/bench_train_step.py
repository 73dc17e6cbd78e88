"""Seconds per training iteration of the full-size FNet, per stage, crop, batch and step variant.

One iteration is what the trainer does per step (:class:`fnet_deploy.training.step.TrainStep`):
forward, loss, backward, Adam step and EMA update (stage I: FNet + IFNet on the inverse-fusion
loss; stage II: FNet on the fusion loss). Inputs are random crops (the cost does not depend on
the content); ``--data`` also times cutting a batch from the cached set on the device. Variants:

- ``eager``: the step as the trainer runs it without a graph;
- ``nhwc``: the same with channels_last activations;
- ``graph`` / ``graph-nhwc``: captured in a CUDA graph after the warm-up (CUDA only);
- ``bf16`` / ``graph-bf16``: bf16 autocast over forward and loss (opt-in in the trainer);
- ``plain``: the loop the trainer ran before the static-buffer step (a fresh batch tensor per
  step, zero_grad / backward / step / EMA update written out), for comparison.

Prints a table and the hours 20,000 iterations per stage would take; ``--json`` writes the
numbers (with the variant, device, torch version and TF32 setting).

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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fnet_deploy.cuda_math import tf32_allowed, tf32_convolutions
from fnet_deploy.model import FNet, IFNet
from fnet_deploy.training.batches import CachedCrops, DeviceImages
from fnet_deploy.training.config import DataConfig, OptimConfig, StepPrecision
from fnet_deploy.training.dataset import CropStream, StepBatches, scan_pairs
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import LossTerms, stage_one_loss, stage_two_loss
from fnet_deploy.training.stage import InverseFusion
from fnet_deploy.training.step import TrainStep, make_adam

VARIANTS: dict[str, tuple[bool, bool, StepPrecision]] = {
    "eager": (False, False, "fp32"),
    "nhwc": (False, True, "fp32"),
    "graph": (True, False, "fp32"),
    "graph-nhwc": (True, True, "fp32"),
    "bf16": (False, False, "bf16"),
    "graph-bf16": (True, False, "bf16"),
}
"""variant -> (CUDA graph, channels_last, precision); ``plain`` is timed separately."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iterations(
    stage: int, crop: int, batch: int, repeats: int, device: torch.device, variant: str
) -> float:
    """Median seconds of one iteration after the warm-up (and the capture, for graphs)."""
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

        def step() -> None:
            ir = torch.rand(shape).to(device)
            vis = torch.rand(shape).to(device)
            total = loss(ir, vis).total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            ema.update(fnet, 1)
            float(total.detach())

    else:
        graph, channels_last, precision = VARIANTS[variant]
        if graph and device.type != "cuda":
            raise ValueError(f"variant {variant} needs a CUDA device")
        if channels_last:
            net.to(memory_format=torch.channels_last)
        optimizer = make_adam(net.parameters(), OptimConfig(), capturable=graph)
        ema = ModelEMA(fnet, 0.999)
        runner = TrainStep(
            loss,
            optimizer,
            ema,
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

    warmup = 5 if device.type == "cuda" else 1
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


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
        print(
            f"{'variant':>11} {'stage':>5} {'crop':>5} {'batch':>5} {'ms/iter':>9} "
            f"{'h per ' + str(args.iterations):>12}"
        )
        for size in args.sizes:
            crop, batch = (int(v) for v in size.lower().split("x"))
            for stage in args.stages:
                for variant in args.variants:
                    if variant.startswith("graph") and not cuda:
                        continue
                    seconds = time_iterations(stage, crop, batch, args.repeats, device, variant)
                    row = {"variant": variant, "stage": stage, "crop": crop, "batch": batch}
                    document["rows"].append(row | {"seconds": seconds})
                    save()
                    hours = seconds * args.iterations / 3600
                    print(
                        f"{variant:>11} {stage:>5} {crop:>5} {batch:>5} {1e3 * seconds:>9.2f} "
                        f"{hours:>12.2f}",
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
