"""Time exported ONNX models one after another on ONNX Runtime's CPU provider, same input.

    python benchmarks/time_onnx_models.py MODEL.onnx [MODEL.onnx ...] [--size 640x480] [--runs 5]

For models ``fnet-deploy bench`` does not build itself (e.g. ``export --precision int8
--float-layers none``): one warm-up, then ``--runs`` timed calls of each model on one random pair
(seed 0), median and minimum in milliseconds. Compare models within one run only.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from fnet_deploy.backends.onnx_runner import OnnxRunner
from fnet_deploy.bench.timing import random_feed, time_runner
from fnet_deploy.commands.common import parse_size
from fnet_deploy.helpers.errors import FnetError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        try:
            width, height = parse_size(args.size, "--size")
            if args.runs < 1:
                raise FnetError(f"--runs must be at least 1, got {args.runs}")
            # Every model is opened before any is timed: a bad one is reported before the work.
            runners = [stack.enter_context(OnnxRunner(path)) for path in args.models]
        except FnetError as err:
            parser.exit(2, f"{err}\n")
        feed = random_feed(1, height, width)
        for path, runner in zip(args.models, runners, strict=True):
            timing = time_runner(runner, feed, warmup=1, iterations=args.runs)
            print(
                f"{path.name}: median {timing.median * 1000:,.0f} ms, "
                f"min {min(timing.samples) * 1000:,.0f} ms over {args.runs} runs at "
                f"{width}x{height}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
