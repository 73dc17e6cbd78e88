"""Seconds per training iteration of the full-size FNet, per stage, crop and batch size.

One iteration is what the trainer does per step: forward, loss, backward, Adam step and EMA
update (stage I: FNet + IFNet on the inverse-fusion loss; stage II: FNet on the fusion loss).
Inputs are random crops (the cost does not depend on the content). Prints a table and the time
20,000 iterations per stage would take; ``--json`` writes the numbers.

    python benchmarks/bench_train_step.py --sizes 64x4 64x8 128x1 128x4 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from fnet_deploy.model import FNet, IFNet
from fnet_deploy.training.ema import ModelEMA
from fnet_deploy.training.losses import stage_one_loss, stage_two_loss
from fnet_deploy.training.trainer import InverseFusion


def time_iterations(stage: int, crop: int, batch: int, repeats: int, device: torch.device) -> float:
    """Median seconds of one iteration after one warm-up iteration."""
    torch.manual_seed(0)
    fnet = FNet().to(device)
    trainable = InverseFusion(fnet, IFNet().to(device)) if stage == 1 else fnet
    optimizer = torch.optim.Adam(trainable.parameters(), lr=1e-4)
    ema = ModelEMA(fnet, 0.999)
    ir = torch.rand(batch, 1, crop, crop, device=device)
    vis = torch.rand(batch, 1, crop, crop, device=device)

    def step() -> None:
        if stage == 1:
            ir_hat, vis_hat = trainable(ir, vis)
            loss: Tensor = stage_one_loss(ir, vis, ir_hat, vis_hat).total
        else:
            loss = stage_two_loss(ir, vis, trainable(ir, vis)).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(fnet, 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x4", "128x1"], help="CROPxBATCH")
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20_000, help="for the estimate")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    print(
        f"{'stage':>5} {'crop':>5} {'batch':>5} {'s/iter':>8} {'h per ' + str(args.iterations):>12}"
    )
    for size in args.sizes:
        crop, batch = (int(v) for v in size.lower().split("x"))
        for stage in args.stages:
            seconds = time_iterations(stage, crop, batch, args.repeats, device)
            hours = seconds * args.iterations / 3600
            rows.append({"stage": stage, "crop": crop, "batch": batch, "seconds": seconds})
            print(f"{stage:>5} {crop:>5} {batch:>5} {seconds:>8.2f} {hours:>12.1f}", flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "device": str(device)}
        meta["threads"] = torch.get_num_threads()
        args.json.write_text(json.dumps(meta | {"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
