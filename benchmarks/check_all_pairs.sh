#!/usr/bin/env bash
# Export FP32, FP16 and INT8 ONNX models and run `fnet-deploy check` on every real pair
# (docs/performance.md).
#
#   benchmarks/check_all_pairs.sh                        # published weights, ../shared/data
#   WEIGHTS=my.safetensors DATA=/data OUT=out/x benchmarks/check_all_pairs.sh
#   MODELS="fnet_int8.onnx fnet_int8_all.onnx" benchmarks/check_all_pairs.sh
#
# MODELS names the files in OUT to check (default fnet.onnx fnet_fp16.onnx fnet_int8.onnx;
# fnet_int8_all.onnx is every convolution in INT8, `export --precision int8 --float-layers none`); only
# the named models are exported, and only when one of them is missing.
# For each data set under DATA (<set>/ir + <set>/vi, or <set>/MRI + <set>/CT|PET|SPECT with the
# MRI image as the first input), one `fnet-deploy check` call compares the models with the
# PyTorch training form (one reference run per pair; FP16 through float16 emulation on CPU).
# Exits non-zero if any set fails. About an hour on 2 CPU cores for the 453 shared pairs and
# the two models of 2026-11-25 (FP32, FP16); more models take longer.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WEIGHTS=${WEIGHTS:-../shared/weights/FNet_official.pth}
OUT=${OUT:-out/check_all_pairs}
read -r -a MODELS <<< "${MODELS:-fnet.onnx fnet_fp16.onnx fnet_int8.onnx}"

# export exits 1 when a model fails its parity check on the sample pair: the models are written
# and the check on every pair below is the measurement, so only other failures stop the script.
flags=()
missing=0
all_int8=0
for model in "${MODELS[@]}"; do
    case $model in
        fnet.onnx) ;;
        fnet_fp16.onnx) flags+=(--precision fp16) ;;
        fnet_int8.onnx) flags+=(--precision int8) ;;
        fnet_int8_all.onnx) [ -f "$OUT/$model" ] || all_int8=1; continue ;;
        *)
            # Any other file must already be in OUT: say so before any export runs.
            [ -f "$OUT/$model" ] || {
                echo "MODELS: no $OUT/$model, and only fnet.onnx, fnet_fp16.onnx, fnet_int8.onnx" \
                    "and fnet_int8_all.onnx are exported here" >&2
                exit 2
            }
            continue ;;
    esac
    [ -f "$OUT/$model" ] || missing=1
done
if [ $missing = 1 ]; then
    fnet-deploy export --weights "$WEIGHTS" --out "$OUT" "${flags[@]}" || [ $? -eq 1 ]
fi
if [ $all_int8 = 1 ]; then
    fnet-deploy export --weights "$WEIGHTS" --out "$OUT/all_int8" --precision int8 --float-layers none \
        || [ $? -eq 1 ]
    mv "$OUT/all_int8/fnet_int8.onnx" "$OUT/fnet_int8_all.onnx"
    rm -rf "$OUT/all_int8"
fi
paths=()
for model in "${MODELS[@]}"; do
    [ -f "$OUT/$model" ] || { echo "no $OUT/$model" >&2; exit 2; }
    paths+=("$OUT/$model")
done
status=0
for set in "$DATA"/*/; do
    set=${set%/}
    for second in vi CT PET SPECT; do
        first=ir
        [ "$second" = vi ] || first=MRI
        [ -d "$set/$first" ] && [ -d "$set/$second" ] || continue
        echo "== $(basename "$set"): $first + $second"
        fnet-deploy check "${paths[@]}" --weights "$WEIGHTS" \
            --ir "$set/$first" --vis "$set/$second" || status=1
    done
done
exit $status
