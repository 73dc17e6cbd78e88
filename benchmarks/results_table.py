"""Regenerate docs/results.md: fusion metrics of FNet and the classical baselines per dataset.

Runs ``fnet-deploy eval`` on every real dataset in ../shared/data with the given weights and the
baselines, then writes one markdown table per dataset (means, paper convention) and a bar chart.

    python benchmarks/results_table.py --weights ../shared/weights/FNet_official.pth
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fnet_deploy.metrics import METRICS
from fnet_deploy.metrics.plots import plot_metric_bars

ROOT = Path(__file__).resolve().parents[1]
DATASETS = [
    ("TNO", "ir", "vi"),
    ("RoadScene", "ir", "vi"),
    ("MSRS_test", "ir", "vi"),
    ("VIFB", "ir", "vi"),
    ("MRI_CT", "MRI", "CT"),
    ("MRI_PET", "MRI", "PET"),
    ("MRI_SPECT", "MRI", "SPECT"),
]
SHOWN = ["EN", "SD", "SF", "AG", "MI", "CE", "SCD", "VIF", "Qabf", "Qcb", "SSIM", "PSNR"]


def run_dataset(data: Path, name: str, a: str, b: str, weights: Path, work: Path) -> dict:
    out = work / name
    if not (out / "results.json").exists():
        subprocess.run(
            [
                "fnet-deploy",
                "eval",
                "--ir",
                str(data / name / a),
                "--vis",
                str(data / name / b),
                "--weights",
                str(weights),
                "--name",
                "FNet (published)",
                "--baseline",
                "average",
                "--baseline",
                "max",
                "--baseline",
                "laplacian",
                "--out",
                str(out),
            ],
            check=True,
        )
    return json.loads((out / "results.json").read_text())


def table(name: str, count: int, document: dict) -> str:
    arrows = {m: "↑" if METRICS[m].higher_is_better else "↓" for m in SHOWN}
    lines = [
        f"### {name} ({count} pairs)",
        "",
        "| method | " + " | ".join(f"{m} {arrows[m]}" for m in SHOWN) + " | ms/frame |",
        "|---|" + "---:|" * (len(SHOWN) + 1),
    ]
    for method, result in document["methods"].items():
        values = [result["mean"].get(m) for m in SHOWN]
        cells = ["-" if v is None else f"{v:.4f}" for v in values]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {result['ms_per_frame']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    documents = {}
    sections = []
    for name, a, b in DATASETS:
        document = run_dataset(args.data, name, a, b, args.weights, args.work)
        documents[name] = document
        count = len(next(iter(document["methods"].values()))["images"])
        sections.append(table(name, count, document))
    plot_metric_bars(documents, args.doc.with_suffix(".png"), ["MI", "VIF", "Qabf", "SSIM"])
    header = (
        "# Fusion results on the real datasets\n\n"
        "Means per dataset, `paper` metric convention (the numbers fusion papers publish: MI in "
        "nats, VIF and SSIM summed over the two sources; see docs/metrics.md), grey images by "
        "BT.601 luminance. FNet inputs are read as the authors' test script reads them (OpenCV "
        "grayscale). ms/frame is the wall time of fusion in that run (FNet: PyTorch eager, "
        "training form, on CPU); it depends on the machine and its load, so read speed from "
        "`fnet-deploy bench` and docs/performance.md instead. The last run was on the "
        "project's 2-core CPU while other jobs shared it. Regenerate with:\n\n"
        "```bash\n"
        f"python benchmarks/results_table.py --weights {args.weights}\n"
        "```\n\n"
        f"![MI, VIF, Qabf and SSIM per dataset]({args.doc.with_suffix('.png').name})\n\n"
    )
    args.doc.write_text(header + "\n".join(sections))
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
