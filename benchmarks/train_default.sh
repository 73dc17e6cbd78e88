#!/usr/bin/env bash
# Train the package's default weights on a CPU with configs/cpu.toml (docs/training.md, "The
# CPU recipe"), at the lowest priority so that it can run beside other work.
#
#   benchmarks/train_default.sh                 # start, or continue the run in $OUT
#   DATA=/path/to/data OUT=runs/x benchmarks/train_default.sh --set threads=2
#
# DATA holds MSRS_train/, MSRS_test/ and RoadScene_train/ (each with ir/ and vi/); default
# ../shared/data. Extra arguments go to `fnet-deploy train`. Ctrl-C or SIGTERM saves the state;
# running the script again resumes exactly. The results are $OUT/fnet.safetensors (end of the
# run) and $OUT/fnet_best.safetensors (best validation): evaluate them with `fnet-deploy eval`
# against the published weights before shipping one as fnet_deploy/assets/fnet_default.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs_cpu/default}

if [ -f "$OUT/config.toml" ]; then
    exec nice -n 19 fnet-deploy train --out "$OUT" --resume "$@"
fi
exec nice -n 19 fnet-deploy train --config configs/cpu.toml \
    --data "$DATA/MSRS_train" --data "$DATA/RoadScene_train" \
    --val-data "$DATA/MSRS_test" --val-data "$DATA/RoadScene_train" --out "$OUT" "$@"
