#!/usr/bin/env bash
# Put what a GPU window sent back ($OUT of benchmarks/gpu_window.sh, the reply's files_at) into
# the CPU's run folder, so that the long run goes on from the GPU's state, on the CPU or in the
# next window.
#
#   benchmarks/gpu_window_collect.sh FILES_AT [RUN_DIR]     # RUN_DIR default runs_cpu/default
#   RECORDS=/tmp/x benchmarks/gpu_window_collect.sh ...     # the record elsewhere (dry runs)
#
# The window continued a snapshot of RUN_DIR (gpu_window_prepare.sh) while the CPU went on
# training RUN_DIR itself: two branches of one run. The GPU's branch is adopted ONLY IF ITS
# STATE IS FURTHER ON (stage, then iteration) THAN RUN_DIR'S STATE IS NOW; otherwise RUN_DIR is
# left as it is and only the window's record is kept. Adopting writes every file that came back
# except config.toml (RUN_DIR keeps its own config: its device, threads and data paths):
# state/stage{1,2}.safetensors, log.csv and validation.csv (the GPU's branch, whose rows up to
# the snapshot are the CPU's), loss_curves.png and the weights that came back (fnet_stage1,
# fnet_best, fnet .safetensors). It is refused while a process trains into RUN_DIR (that one
# would overwrite the states at its next checkpoint): stop it first (SIGTERM saves; then
# `benchmarks/train_default.sh` resumes from the adopted state, on the CPU, exactly).
# The window's record is kept as $RECORDS/gpu_window_<UTC time>.{json,log} (default
# benchmarks/results). Then commit the record (and the run folder when issue 38 says so).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:?usage: gpu_window_collect.sh FILES_AT [RUN_DIR]}
RUN_DIR=${2:-runs_cpu/default}
RECORDS=${RECORDS:-benchmarks/results}
[ -f "$SRC/results.json" ] || { echo "gpu_window_collect: $SRC has no results.json" >&2; exit 2; }

back=$(mktemp -d /tmp/gpu_window_back.XXXX)
trap 'rm -rf "$back"' EXIT
mkdir -p "$back/state"
for stage in 1 2; do
    if [ -f "$SRC/stage$stage.safetensors" ]; then
        cp "$SRC/stage$stage.safetensors" "$back/state/"
    fi
done
if [ -f "$SRC/run.tar.gz" ]; then
    tar xzf "$SRC/run.tar.gz" -C "$back"
fi
python3 benchmarks/gpu_bench.py adopt --from "$back" --into "$RUN_DIR"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RECORDS"
cp "$SRC/results.json" "$RECORDS/gpu_window_$stamp.json"
if [ -f "$SRC/window.log" ]; then
    cp "$SRC/window.log" "$RECORDS/gpu_window_$stamp.log"
fi
chmod u+w "$RECORDS/gpu_window_$stamp".* # files_at is read-only, and cp keeps the source's mode
python3 benchmarks/gpu_bench.py steps "$RUN_DIR"
echo "now: git add $RECORDS/gpu_window_$stamp.* && git commit; restart the CPU run" \
    "(benchmarks/train_default.sh) if it was stopped"
