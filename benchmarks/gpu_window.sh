#!/usr/bin/env bash
# One GPU window (issue 14), prepared on the CPU, run as ONE command of the device tool:
# CUDA tests, training-step and inference benchmarks, then the paper's training recipe, stage I
# then stage II, resumed from runs_gpu/paper and time-boxed to what is left of the window.
#
# --- The call -------------------------------------------------------------------------------
# 1. Here, once per checkout:  benchmarks/gpu_window_prepare.sh   (fills .gpu_carry/data, 18 MiB)
# 2. Device tool `run`:
#        command:   bash benchmarks/gpu_window.sh
#        carry:     [".gpu_carry"]
#        timeout_s: 570
#    (later windows, inference already measured:  command: PARTS=train bash benchmarks/gpu_window.sh)
#    Then give_back at once. With the machine's start (1-2 min) this uses about 11-12 of the 15
#    device minutes: there is no second try, so check `status` first and run nothing else.
# 3. Here: benchmarks/gpu_window_collect.sh <files_at of the reply>  puts the run back into
#    runs_gpu/paper; commit that folder and record the numbers (docs/training.md, "The GPU
#    window"). Until the recipe is complete runs_gpu/paper is how the next window, in another
#    session on another machine, resumes; remove it when the run is finished.
# Everything that travels: tracked files (about 4 MiB, plus runs_gpu/paper: up to 16 MiB of
# state), .gpu_carry (18 MiB): under the 64 MiB limit. Files back: at most 6, each < 16 MiB.
#
# --- How its minutes are spent (budget WINDOW_SECONDS=510 from the start of this script) -----
#   0:00-0:15  nvidia-smi, versions; carried wheels (none needed today); the package itself
#              (pip install -e . --no-deps --no-index, else PYTHONPATH)
#   0:15-1:15  tests/test_cuda.py                                          (timeout 60 s)
#   1:15-1:55  training step at 128x16, stage I and II: eager, CUDA graph, graph + NHWC; the
#              faster graph layout is used for training                   (timeout 40 s)
#   1:55-3:10  fnet-deploy bench on cuda: 480x640 and 512x640, batch 1 and 4, fp32 and fp16:
#              training form, deploy form, deploy form from a CUDA graph (NCHW, NHWC, taps +
#              fold)                          (timeout 75 s; SIGINT keeps the finished cells)
#   3:10-3:35  fp16 / TF32 / fp32 error against float64 on 12 real pairs   (timeout 25 s)
#   3:35-4:25  torch.compile of the deploy form, one cell (480x640, b1, fp16) (timeout 50 s)
#   4:25-8:05  training, stage I then II: --max-minutes = what is left minus 25 s; stops after
#              the last iteration that fits, state saved (exit 75), or finishes (exit 0); a
#              hung run gets SIGTERM (save and stop) 10 s before the window's end, SIGKILL 10 s
#              later (the checkpoint of every 2,000 iterations stays)
#   8:05-8:30  results.json, run.tar.gz, state files into $OUT
# PARTS=...,multi (opt-in, not in the default list: no room next to the training) adds the
# several-camera-pairs benchmark of issue 17 (benchmarks/bench_multi_stream.py: four pairs at
# 640x512 batched in one process, unbatched, and one process each; at most 90 s; its JSON goes
# straight to $OUT/multi_stream.json), e.g. PARTS=tests,bench,multi in a window without training.
# PARTS=train skips the benchmarks and trains for about 7.9 minutes. A part that overruns is
# stopped by its timeout; training always gets what is left. results.json is written once
# before the training too, and a SIGTERM / SIGINT / SIGHUP to this script delivers what exists
# to $OUT before it exits; window.log is written to $OUT as it goes.
#
# --- What to expect of the training (an estimate, not a measurement) ------------------------
# Stage I is about 1.1 TFLOP per iteration at batch 16 x 128 x 128 (FNet + IFNet forward and
# backward, 4.2 MFLOP per pixel), stage II about 0.66 TFLOP; the recipe is 20,000 of each,
# about 35 PFLOP. The H200 does dense bf16 matrix work at about 790 TFLOP/s measured here and
# TF32 at about half that; these convolutions (1 or 2 channels in or out, 9x9) use the tensor
# cores poorly, and the smooth-l0 gates add memory-bound elementwise passes (roughly 30 GB per
# stage-I iteration at 4.8 TB/s: ~7 ms). Guess: 40-120 TFLOP/s effective, i.e. 15-35 ms per
# stage-I and 10-25 ms per stage-II iteration: in the first window (~3.5 min of training)
# 6,000-14,000 stage-I iterations; the whole recipe in 10-25 minutes of training, so two to
# four windows. The step benchmark of the first window replaces this guess with a measurement.
#
# --- Dry run on a CPU ------------------------------------------------------------------------
#   GPU_WINDOW_DRY_RUN=1 OUT=/tmp/gw1 bash benchmarks/gpu_window.sh
# runs every part on the CPU with a tiny model, tiny images and tiny data (3 pairs of each
# carried set, or of ../shared/data), into RUN_DIR (default /tmp/fnet_gpu_window_dry/run,
# kept between dry runs so a second one resumes). TRAIN_MINUTES overrides the time box.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
T0=$(date +%s)
WINDOW_SECONDS=${WINDOW_SECONDS:-510}
T_END=$((T0 + WINDOW_SECONDS))
PARTS=${PARTS:-tests,step,bench,errors,compile,train}
DRY=${GPU_WINDOW_DRY_RUN:-0}
if [ "$DRY" = 1 ]; then
    OUT=${OUT:-$(mktemp -d /tmp/gpu_window_out.XXXX)}
    DRY_ROOT=${DRY_ROOT:-/tmp/fnet_gpu_window_dry}
    RUN_DIR=${RUN_DIR:-$DRY_ROOT/run}
else
    OUT=${OUT:?set by the device tool}
    RUN_DIR=${RUN_DIR:-runs_gpu/paper}
fi
WORK=$(mktemp -d /tmp/gpu_window_work.XXXX)
mkdir -p "$OUT" "$RUN_DIR"
exec > >(tee -a "$OUT/window.log") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1
PY=python3

left() { echo $((T_END - $(date +%s))); }
wanted() { [[ ",$PARTS," == *",$1,"* ]]; }
# run_part NAME CAP_SECONDS [timeout options] -- command...: bounded by its cap and by the
# window, its exit status and duration recorded in parts.tsv for the summary.
run_part() {
    local name=$1 cap=$2 signal=TERM
    shift 2
    if [ "$1" = --int ]; then signal=INT; shift; fi
    local limit=$cap budget
    budget=$(($(left) - 60))
    [ "$budget" -lt "$limit" ] && limit=$budget
    if [ "$limit" -lt 5 ]; then
        echo "== $name: skipped, $(left) s left in the window"
        printf '%s\t%s\t%s\n' "$name" 999 0 >>"$WORK/parts.tsv"
        return
    fi
    echo "== $name (at most $limit s; $(left) s left)"
    local start rc
    start=$(date +%s)
    timeout -s "$signal" -k 10 "$limit" "$@"
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" >>"$WORK/parts.tsv"
    echo "== $name: exit $rc after $(($(date +%s) - start)) s"
}

# deliver: the files back into $OUT (at most 8, each under 16 MiB): the two training states,
# the final weights when stage II is done, the small run files as one archive, results.json
# (window.log is already there). Run at the end, and by the trap if the script is stopped.
BEFORE='{}'
deliver() {
    local stage name small=()
    for stage in 1 2; do
        [ -f "$RUN_DIR/state/stage$stage.safetensors" ] &&
            cp "$RUN_DIR/state/stage$stage.safetensors" "$OUT/"
    done
    [ -f "$RUN_DIR/fnet.safetensors" ] && cp "$RUN_DIR/fnet.safetensors" "$OUT/"
    for name in config.toml log.csv fnet_stage1.safetensors loss_curves.png; do
        [ -f "$RUN_DIR/$name" ] && small+=("$name")
    done
    [ ${#small[@]} -gt 0 ] && tar czf "$OUT/run.tar.gz" -C "$RUN_DIR" "${small[@]}"
    timeout 60 $PY benchmarks/gpu_bench.py summary --work "$WORK" --run "$RUN_DIR" \
        --before "$BEFORE" --json "$OUT/results.json"
}
stopped() {
    trap - TERM INT HUP
    exec >>"$OUT/window.log" 2>&1 # tee may have been stopped with us
    echo "== gpu_window: stopped by a signal after $(($(date +%s) - T0)) s; delivering what exists"
    deliver
    exit 143
}
trap stopped TERM INT HUP

echo "== GPU window $(date -u +%FT%TZ), dry run: $DRY, parts: $PARTS, run: $RUN_DIR, out: $OUT"
if [ "$DRY" = 1 ]; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    DATA_SRC=.gpu_carry/data
    [ -d "$DATA_SRC/MSRS_train" ] || DATA_SRC=../shared/data
    for set in MSRS_train RoadScene_train; do
        for sub in ir vi; do
            mkdir -p "$DRY_ROOT/data/$set/$sub"
            find "$DATA_SRC/$set/$sub" -maxdepth 1 -type f | sort | head -3 |
                xargs -I{} cp -n {} "$DRY_ROOT/data/$set/$sub/"
        done
    done
    DATA_DIRS=("$DRY_ROOT/data/MSRS_train" "$DRY_ROOT/data/RoadScene_train")
else
    timeout 20 nvidia-smi | tee "$WORK/nvidia-smi.txt"
    if ! timeout 60 $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    then
        echo "gpu_window: torch sees no CUDA device; stopping" >&2
        exit 1
    fi
    if compgen -G ".gpu_carry/wheels/*.whl" >/dev/null; then
        timeout 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/site .gpu_carry/wheels/*.whl && export PYTHONPATH=/tmp/site
    fi
    if ! timeout 30 $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .; then
        echo "pip could not install the package: running it from the checkout (PYTHONPATH)"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    DATA_DIRS=(.gpu_carry/data/MSRS_train .gpu_carry/data/RoadScene_train)
    if [ ! -d "${DATA_DIRS[0]}/ir" ] || [ ! -d "${DATA_DIRS[1]}/ir" ]; then
        echo "gpu_window: no training pairs in .gpu_carry/data (run gpu_window_prepare.sh here" \
            "and name .gpu_carry in carry): benchmarks only, no training" >&2
        PARTS=${PARTS//errors/}
        PARTS=${PARTS//train/}
    fi
fi
timeout 60 $PY -c "import torch, fnet_deploy; print('torch', torch.__version__,
'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version() if torch.cuda.is_available() else None,
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
'fnet_deploy', fnet_deploy.__file__)"

if wanted tests; then
    run_part tests 60 $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
fi

LAYOUT=""
if wanted step; then
    if [ "$DRY" = 1 ]; then
        step_args=(--device cpu --sizes 16x2 --variants eager nhwc --repeats 1)
    else
        step_args=(--device cuda --sizes 128x16 --variants eager graph graph-nhwc --repeats 15)
    fi
    run_part step 40 --int $PY benchmarks/bench_train_step.py "${step_args[@]}" \
        --stages 1 2 --json "$WORK/train_step.json"
    LAYOUT=$($PY benchmarks/gpu_bench.py choose-layout "$WORK/train_step.json")
    echo "channels_last for training: ${LAYOUT:-unchanged (no measurement)}"
fi

if wanted bench; then
    # shellcheck disable=SC2054  # the commas belong to fnet-deploy's list options
    if [ "$DRY" = 1 ]; then
        bench_args=(--device cpu --backend torch-training,torch,torch-graph
            --precision fp32 --size 64x48 --batch 1 --warmup 1 --iterations 2 --no-peaks)
    else
        bench_args=(--device cuda
            --backend torch-training,torch,torch-graph,torch-nhwc-graph,torch-col2im-graph
            --precision fp32,fp16 --size 640x480,640x512 --batch 1,4
            --warmup 3 --iterations 25 --max-seconds 0.5)
    fi
    run_part bench 75 --int $PY -m fnet_deploy bench "${bench_args[@]}" --json "$WORK/bench.json"
fi

if wanted errors; then
    if [ "$DRY" = 1 ]; then
        error_args=(--device cpu --pairs 1 --crop 48)
    else
        error_args=(--device cuda --pairs 6)
    fi
    run_part errors 25 $PY benchmarks/gpu_bench.py errors "${error_args[@]}" \
        --data "${DATA_DIRS[@]}" --json "$WORK/errors.json"
fi

if wanted compile && [ "$DRY" != 1 ]; then
    run_part compile 50 --int $PY -m fnet_deploy bench --device cuda --backend torch-compile \
        --precision fp16 --size 640x480 --batch 1 --warmup 2 --iterations 25 \
        --max-seconds 0.5 --no-peaks --json "$WORK/compile.json"
fi

if wanted multi; then
    if [ "$DRY" = 1 ]; then
        multi_args=(--tiny --device cpu --frames 4 --size 64x48)
    else
        multi_args=(--device cuda --frames 48 --size 640x512)
    fi
    run_part multi 90 $PY benchmarks/bench_multi_stream.py "${multi_args[@]}" \
        --json "$OUT/multi_stream.json"
fi

BEFORE=$($PY benchmarks/gpu_bench.py steps "$RUN_DIR")
if [ -s "$WORK/parts.tsv" ] && wanted train; then
    # The measurements so far, in case the training part is what the device tool stops.
    timeout 60 $PY benchmarks/gpu_bench.py summary --work "$WORK" --run "$RUN_DIR" \
        --before "$BEFORE" --json "$OUT/results.json" >/dev/null
fi
if wanted train; then
    if [ -n "${TRAIN_MINUTES:-}" ]; then
        minutes=$TRAIN_MINUTES
    else
        minutes=$($PY -c "print(round(max(0.25, ($(left) - 25) / 60), 2))")
    fi
    if [ -f "$RUN_DIR/config.toml" ]; then
        train_args=(--out "$RUN_DIR" --resume)
    else
        train_args=(--config configs/gpu.toml --out "$RUN_DIR")
        if [ "$DRY" = 1 ]; then
            train_args+=(--device cpu --data "${DATA_DIRS[0]}" --data "${DATA_DIRS[1]}"
                --crop 32 --batch-size 2 --set model.filters=4 --set model.kernel_size=3
                --set model.iterations=2 --set stage1.iterations=300 --set stage2.iterations=100
                --set log.log_every=5 --set log.checkpoint_every=10)
        fi
    fi
    [ -n "$LAYOUT" ] && train_args+=(--set "speed.channels_last=$LAYOUT")
    # The time box stops the run after its last iteration that fits (exit 75); the hard limit
    # (SIGTERM: stop after the current iteration and save; SIGKILL 10 s later) only catches a
    # run that hangs, so that the files still reach $OUT before the device tool's timeout_s.
    hard=$(($(left) - 10))
    [ "$hard" -lt 30 ] && hard=30
    echo "== train: $RUN_DIR was at $BEFORE; time box $minutes min, hard limit $hard s"
    start=$(date +%s)
    timeout -s TERM -k 10 "$hard" $PY -m fnet_deploy train "${train_args[@]}" \
        --max-minutes "$minutes"
    rc=$?
    printf '%s\t%s\t%s\n' train "$rc" "$(($(date +%s) - start))" >>"$WORK/parts.tsv"
    case $rc in
        0) echo "== train: the recipe is complete" ;;
        75) echo "== train: time box reached, state saved; the next window resumes it" ;;
        *) echo "== train: exit $rc (see above); the last checkpoint is in $RUN_DIR/state" ;;
    esac
fi

deliver
rm -rf "$WORK"
echo "== files in $OUT after $(($(date +%s) - T0)) s:"
ls -l "$OUT"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit 0
