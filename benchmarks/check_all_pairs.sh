#!/usr/bin/env bash
# Export FP32 + FP16 ONNX models and run `fnet-deploy check` on every real pair (docs/performance.md).
#
#   benchmarks/check_all_pairs.sh                        # published weights, ../shared/data
#   WEIGHTS=my.safetensors DATA=/data OUT=out/x benchmarks/check_all_pairs.sh
#
# For each data set under DATA (<set>/ir + <set>/vi, or <set>/MRI + <set>/CT|PET|SPECT with the
# MRI image as the first input), one `fnet-deploy check` call compares both models with the
# PyTorch training form (one reference run per pair; FP16 through float16 emulation on CPU).
# Exits non-zero if any set fails. About an hour on 2 CPU cores for the 453 shared pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WEIGHTS=${WEIGHTS:-../shared/weights/FNet_official.pth}
OUT=${OUT:-out/check_all_pairs}

if [ ! -f "$OUT/fnet.onnx" ] || [ ! -f "$OUT/fnet_fp16.onnx" ]; then
    fnet-deploy export --weights "$WEIGHTS" --out "$OUT" --fp16
fi
status=0
for set in "$DATA"/*/; do
    set=${set%/}
    for second in vi CT PET SPECT; do
        first=ir
        [ "$second" = vi ] || first=MRI
        [ -d "$set/$first" ] && [ -d "$set/$second" ] || continue
        echo "== $(basename "$set"): $first + $second"
        fnet-deploy check "$OUT/fnet.onnx" "$OUT/fnet_fp16.onnx" --weights "$WEIGHTS" \
            --ir "$set/$first" --vis "$set/$second" || status=1
    done
done
exit $status
