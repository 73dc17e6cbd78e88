#!/usr/bin/env bash
# Fill .gpu_carry/ (ignored by git) with what benchmarks/gpu_window.sh needs on the GPU machine
# and its image lacks: a snapshot of the CPU's long run, the data it trains and validates on,
# and Python wheels if any are ever needed.
#
#   benchmarks/gpu_window_prepare.sh                        # the run in runs_cpu/default
#   RUN=runs_cpu/other benchmarks/gpu_window_prepare.sh      # another run folder
#   WHEELS="name==1.2.3 other==4.5" benchmarks/gpu_window_prepare.sh   # also carry these wheels
#
# Run it right before the device call. It copies (benchmarks/gpu_bench.py carry-run):
# - RUN's config.toml, log.csv, validation.csv, loss_curves.png, fnet_best.safetensors and the
#   state of its current stage (stage I: state/stage1.safetensors, 9 MiB; once stage II has
#   begun only state/stage2.safetensors, 6.5 MiB, and the window trains --stage 2) into
#   .gpu_carry/run, again if the CPU run saved a checkpoint meanwhile (it keeps training here:
#   the snapshot is what the window continues, and gpu_window_collect.sh later adopts the GPU's
#   state only if it is further on than the CPU run is by then);
# - the data folders of RUN's config into .gpu_carry/data/<name>: the training folders whole
#   (the crop stream draws from every pair; MSRS_train 13 MiB, RoadScene_train 7 MiB), of a
#   validation folder that trains nothing only the pairs validation picks (MSRS_test: 6 of 20);
# - .gpu_carry/train_args: the `fnet-deploy train` options, one a line, that point the resumed
#   run at the carried data.
# The device image already has every package fnet-deploy imports (torch 2.11 with CUDA, numpy,
# OpenCV, safetensors, typer, rich, scipy, scikit-image, matplotlib, pytest); the training losses
# are plain PyTorch, so no wheel is needed today. Then name .gpu_carry in the run tool's `carry`
# (see the header of benchmarks/gpu_window.sh). Everything that travels must stay under 64 MiB:
# this script prints the total of the carried folder and of the tracked and untracked files
# (runs_cpu/ travels a second time as an untracked or tracked folder).
# CARRY=DIR fills DIR instead (the dry run of gpu_window.sh; no size check then).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs_cpu/default}
CARRY=${CARRY:-.gpu_carry}

mkdir -p "$CARRY"
python3 benchmarks/gpu_bench.py carry-run --run "$RUN" --carry "$CARRY"

if [ -n "${WHEELS:-}" ]; then
    mkdir -p "$CARRY/wheels"
    # shellcheck disable=SC2086  # WHEELS is a space-separated list of requirements
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" $WHEELS
fi

[ "$CARRY" = .gpu_carry ] || exit 0
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
