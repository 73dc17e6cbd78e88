#!/usr/bin/env bash
# Train the package's default weights on a CPU with configs/cpu.toml (docs/training.md).
#
#   benchmarks/train_default.sh                 # start, or continue an interrupted run
#   DATA=/path/to/data OUT=runs/x benchmarks/train_default.sh --set threads=1
#
# DATA holds MSRS_train/ and RoadScene_train/ (each with ir/ and vi/); default ../shared/data.
# Extra arguments go to `fnet-deploy train` (e.g. --set threads=1 on a CPU shared with other
# jobs). About 14 hours on 2 cores; Ctrl-C saves the state, and running the script again resumes.
# The result is $OUT/fnet.safetensors: check it with `fnet-deploy weights info` and by fusing,
# then copy it to fnet_deploy/assets/fnet_default.safetensors to ship it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/default-cpu}

if [ -f "$OUT/config.toml" ]; then
    exec fnet-deploy train --out "$OUT" --resume "$@"
fi
exec fnet-deploy train --config configs/cpu.toml \
    --data "$DATA/MSRS_train" --data "$DATA/RoadScene_train" --out "$OUT" "$@"
