#!/usr/bin/env bash
# Put what a GPU window sent back ($OUT of benchmarks/gpu_window.sh, the reply's files_at) into
# the committed run folder, so that the next window, in any session, resumes it.
#
#   benchmarks/gpu_window_collect.sh FILES_AT [RUN_DIR]     # RUN_DIR default runs_gpu/paper
#   RECORDS=/tmp/x benchmarks/gpu_window_collect.sh ...     # the record elsewhere (dry runs)
#
# Writes RUN_DIR/state/stage{1,2}.safetensors, RUN_DIR/{config.toml, log.csv, loss_curves.png,
# fnet_stage1.safetensors, fnet.safetensors} (those that came back) and keeps the window's
# record as $RECORDS/gpu_window_<UTC time>.{json,log} (default benchmarks/results). Then commit:
#   git add RUN_DIR benchmarks/results/gpu_window_* && git commit -m "train: GPU window ..."
# When the recipe is complete (results.json: "recipe_done": 1.0), evaluate RUN_DIR/fnet.safetensors
# (docs/training.md) and remove RUN_DIR from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:?usage: gpu_window_collect.sh FILES_AT [RUN_DIR]}
RUN_DIR=${2:-runs_gpu/paper}
RECORDS=${RECORDS:-benchmarks/results}
[ -f "$SRC/results.json" ] || { echo "gpu_window_collect: $SRC has no results.json" >&2; exit 2; }

mkdir -p "$RUN_DIR/state"
for stage in 1 2; do
    if [ -f "$SRC/stage$stage.safetensors" ]; then
        cp "$SRC/stage$stage.safetensors" "$RUN_DIR/state/"
    fi
done
[ -f "$SRC/fnet.safetensors" ] && cp "$SRC/fnet.safetensors" "$RUN_DIR/"
[ -f "$SRC/run.tar.gz" ] && tar xzf "$SRC/run.tar.gz" -C "$RUN_DIR"
chmod -R u+w "$RUN_DIR" # files_at is read-only, and cp keeps the source's mode
stamp=$(date -u +%Y%m%dT%H%MZ)
mkdir -p "$RECORDS"
cp "$SRC/results.json" "$RECORDS/gpu_window_$stamp.json"
[ -f "$SRC/window.log" ] && cp "$SRC/window.log" "$RECORDS/gpu_window_$stamp.log"
python3 benchmarks/gpu_bench.py steps "$RUN_DIR"
du -sh "$RUN_DIR"
echo "now: git add $RUN_DIR $RECORDS/gpu_window_$stamp.* && git commit"
