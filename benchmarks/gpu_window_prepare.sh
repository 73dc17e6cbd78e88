#!/usr/bin/env bash
# Fill .gpu_carry/ (ignored by git) with what benchmarks/gpu_window.sh needs on the GPU machine
# and its image lacks: the training pairs, and Python wheels if any are ever needed.
#
#   benchmarks/gpu_window_prepare.sh                 # data from ../shared/data
#   DATA=/path/to/data benchmarks/gpu_window_prepare.sh
#   WHEELS="name==1.2.3 other==4.5" benchmarks/gpu_window_prepare.sh   # also carry these wheels
#
# The device image already has every package fnet-deploy imports (torch 2.11 with CUDA, numpy,
# OpenCV, safetensors, typer, rich, scipy, scikit-image, matplotlib, pytest); the training losses
# are plain PyTorch, so no wheel is needed today. Then name .gpu_carry in the run tool's `carry`
# (see the header of benchmarks/gpu_window.sh). Everything that travels must stay under 64 MiB:
# this script prints the total of the carried folder and of the tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
CARRY=.gpu_carry

mkdir -p "$CARRY/data"
for set in MSRS_train RoadScene_train; do
    if [ ! -d "$DATA/$set/ir" ] || [ ! -d "$DATA/$set/vi" ]; then
        echo "gpu_window_prepare: $DATA/$set has no ir/ and vi/ folders (set DATA)" >&2
        exit 2
    fi
    rm -rf "${CARRY:?}/data/$set"
    mkdir -p "$CARRY/data/$set"
    cp -r "$DATA/$set/ir" "$DATA/$set/vi" "$CARRY/data/$set/"
done

if [ -n "${WHEELS:-}" ]; then
    mkdir -p "$CARRY/wheels"
    # shellcheck disable=SC2086  # WHEELS is a space-separated list of requirements
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" $WHEELS
fi

# What travels: the carried folder, tracked files and untracked files git does not ignore
# (other work in progress in this checkout travels too).
carried=$(du -sb "$CARRY" | cut -f1)
tracked=$(git ls-files -z | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null |
    tail -1 | cut -f1)
total=$((carried + ${tracked:-0} + ${untracked:-0}))
echo "carry: $CARRY $((carried / 1048576)) MiB; tracked files $((${tracked:-0} / 1048576)) MiB;" \
    "untracked, not ignored $((${untracked:-0} / 1048576)) MiB; together" \
    "$((total / 1048576)) MiB of the 64 MiB a call may move"
if [ "$total" -gt $((60 * 1048576)) ]; then
    echo "gpu_window_prepare: over 60 MiB would travel; the device tool refuses 64 MiB" >&2
    exit 1
fi
