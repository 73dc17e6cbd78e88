"""The stage-II training loss of several weights files on the same random crops of real pairs.

The loss is the trainer's own (:func:`fnet_deploy.training.losses.stage_two_loss`), computed in
float64 (convolutions in tap-GEMM form) on ``--crops`` random ``--crop`` x ``--crop`` windows
per data set (visible read as the trainer reads it: BT.601 studio-range Y), the same windows for
every weights file (seeded).
Both SSIM forms are reported: ``same`` (the authors' pytorch-ssim, the default) and ``valid``.
Lower is better; the loss tracks quality on the distribution the authors trained on (MSRS).

    python benchmarks/stage2_loss.py --weights ../shared/weights/FNet_official.pth \\
        fnet_deploy/assets/fnet_default.safetensors \\
        --data ../shared/data/MSRS_train ../shared/data/MSRS_test --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fnet_deploy.model import load_fnet
from fnet_deploy.model.tap_conv import set_conv_form
from fnet_deploy.training.config import DataConfig, StageTwoConfig
from fnet_deploy.training.dataset import scan_pairs
from fnet_deploy.training.losses import stage_two_loss


def random_crops(folder: Path, crops: int, crop: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``crops`` random windows (one per drawn pair, pairs drawn with replacement) of the
    folder's pairs: (ir, vis), each crops x 1 x crop x crop float64 in [0, 1]."""
    scan = scan_pairs(DataConfig(folders=(str(folder),), crop=crop))
    rng = np.random.default_rng(seed)
    irs, viss = [], []
    for _ in range(crops):
        ir, vis = scan.images[int(rng.integers(len(scan.images)))]
        top = int(rng.integers(ir.shape[0] - crop + 1))
        left = int(rng.integers(ir.shape[1] - crop + 1))
        irs.append(ir[top : top + crop, left : left + crop])
        viss.append(vis[top : top + crop, left : left + crop])
    return tuple(torch.from_numpy(np.stack(x)[:, None].astype(np.float64)) for x in (irs, viss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", type=Path, required=True)
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--crops", type=int, default=12)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = {path.name: load_fnet(path)[0].double() for path in args.weights}
    for model in models.values():
        set_conv_form(model, "tap")  # PyTorch's float64 CPU convolution is very slow here
    results: list[dict[str, Any]] = []
    print(f"stage-II loss, float64, {args.crops} crops of {args.crop}x{args.crop} per set")
    for folder in args.data:
        ir, vis = random_crops(folder, args.crops, args.crop, args.seed)
        for name, model in models.items():
            with torch.no_grad():
                fused = model(ir, vis)
            row: dict[str, Any] = {"data": folder.name, "weights": name}
            for positions in ("same", "valid"):
                terms = stage_two_loss(ir, vis, fused, StageTwoConfig(ssim_positions=positions))
                row[f"loss_{positions}"] = float(terms.total)
                if positions == "same":
                    row |= {part: float(value) for part, value in terms.parts.items()}
            darker = float((torch.maximum(ir, vis) - fused.clamp(0, 1)).mean())
            row["mean_below_max"] = darker / float(torch.maximum(ir, vis).mean())
            results.append(row)
            print(
                f"{folder.name:>16} {name:>32}: loss {row['loss_same']:.3f} (valid SSIM "
                f"{row['loss_valid']:.3f}); intensity {row['intensity']:.3f}, gradient "
                f"{row['gradient']:.3f}, ssim {row['ssim']:.3f}; "
                f"{100 * row['mean_below_max']:.1f} % darker than max(ir, vis)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
