#!/usr/bin/env bash
# One GPU window (issues 14, 38), prepared on the CPU, run as ONE command of the device tool:
# CUDA tests, training-step and inference benchmarks, then THE CPU'S LONG RUN (runs_cpu/default,
# configs/cpu.toml, trained by benchmarks/train_default.sh) continued on CUDA from a snapshot,
# time-boxed to what is left of the window, and its state sent back.
#
# --- The call -------------------------------------------------------------------------------
# 1. Here, right before the call:  benchmarks/gpu_window_prepare.sh  (fills .gpu_carry: a
#    snapshot of runs_cpu/default, its state, log and validation record, 9 MiB in stage I, and
#    the data of its config: MSRS_train, RoadScene_train, 6 validation pairs of MSRS_test, 22 MiB;
#    the CPU run keeps training meanwhile)
# 2. Device tool `run`:
#        command:   bash benchmarks/gpu_window.sh
#        carry:     [".gpu_carry"]
#        timeout_s: 570
#    (later windows, inference already measured:  command: PARTS=train bash benchmarks/gpu_window.sh)
#    Then give_back at once. With the machine's start (1-2 min) this uses about 11-12 of the 15
#    device minutes: there is no second try, so check `status` first and run nothing else.
# 3. Here: benchmarks/gpu_window_collect.sh <files_at of the reply>  adopts the GPU's state into
#    runs_cpu/default ONLY IF it is further on (stage, iteration) than the CPU's state by then
#    (stop the CPU run first: collect refuses while a process trains into runs_cpu/default; then
#    restart benchmarks/train_default.sh, which resumes from the adopted state on the CPU), and
#    keeps the window's record in benchmarks/results; record the numbers (docs/training.md, "The
#    GPU window").
# Everything that travels: tracked files (about 6 MiB), untracked files (runs_cpu/: 9 MiB in
# stage I, about 19 MiB in stage II), .gpu_carry (29 MiB in stage I, about 30 MiB in stage II):
# 44 MiB measured in stage I, about 55 MiB in stage II, under the 64 MiB limit
# (gpu_window_prepare.sh prints the total). Files back: at most 6, each < 16 MiB.
#
# --- How its minutes are spent (budget WINDOW_SECONDS=510 from the start of this script) -----
#   0:00-0:15  nvidia-smi, versions; carried wheels (none needed today); the package itself
#              (pip install -e . --no-deps --no-index, else PYTHONPATH)
#   0:15-1:15  tests/test_cuda.py, float64 references on the GPU          (timeout 60 s)
#   1:15-1:55  training step of the carried recipe (128x2, stage I and II): eager NCHW and NHWC,
#              CUDA graph NCHW and NHWC; the faster eager layout is used for training (the
#              recipe's warm-up and cosine schedule rule out a graph)  (timeout 40 s)
#   1:55-3:10  fnet-deploy bench on cuda: 480x640 and 512x640, batch 1 and 4, fp32 and fp16:
#              training form, deploy form, deploy form from a CUDA graph (NCHW, NHWC, taps +
#              fold); each precision's floors from peaks in its own dtype, the JSON rewritten
#              after every cell, a failing cell recorded in its row (timeout 75 s; SIGINT keeps
#              the finished cells)
#   3:10-3:35  fp16 / TF32 / fp32 error against float64 on 12 real pairs   (timeout 25 s)
#   3:35-4:25  torch.compile of the deploy form, one cell (480x640, b1, fp16) (timeout 50 s)
#   4:25-8:05  training: `fnet-deploy train --out .gpu_carry/run --resume --device cuda
#              --set threads=0` plus the carried data options (.gpu_carry/train_args) and
#              --max-time-min = what is left minus 25 s; stops after the last iteration that
#              fits, state saved (exit 75), or finishes (exit 0); a hung run gets SIGTERM (save
#              and stop) 10 s before the window's end, SIGKILL 10 s later (the checkpoint of
#              every 50 iterations stays)
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
# The carried recipe trains batch 2 of 128 x 128 crops: about 0.14 TFLOP per stage-I iteration
# (FNet + IFNet forward and backward, 4.2 MFLOP per pixel) and 0.08 TFLOP per stage-II one, so
# an H100 / H200 is bound by kernel launches and small-kernel latency, not by its 400+ TFLOP/s:
# guess 10-25 ms per eager iteration (the CPU takes 2-4 s), i.e. 8,000-20,000 iterations in the
# ~3.5 minutes of training of a first window; the recipe (5,000 + 15,000 iterations, validation
# every 250) in one to three windows. The trainer validates on the CPU (12 pairs at 192 x 192,
# a few seconds each time): the window log's "validation took" line says what share of the
# training that is. The step benchmark of the first window replaces this guess with a
# measurement.
#
# --- Dry run on a CPU ------------------------------------------------------------------------
#   GPU_WINDOW_DRY_RUN=1 OUT=/tmp/gw_out DRY_ROOT=/tmp/gw_dry bash benchmarks/gpu_window.sh
# runs every part on the CPU (one torch thread) with tiny images and tiny data (3 pairs of each
# set, from .gpu_carry/data or ../shared/data, into DRY_ROOT/data), and with the tiny model
# (4 filters, 3 x 3 kernels, 2 iterations: gpu_bench.py tiny-weights) in bench and errors and in
# a stand-in for the CPU run, DRY_ROOT/cpu_run (configs/cpu.toml on that model and data, made by
# the first dry run: 6 s of training); the step benchmark times the paper's model on 16 x 16
# crops. The window then does what it does on the GPU: gpu_window_prepare.sh snapshots the
# stand-in into DRY_ROOT/carry, the training part resumes the snapshot (TRAIN_MINUTES, default
# 0.1 in a dry run), the files go to OUT, and gpu_window_collect.sh (records in
# DRY_ROOT/records) adopts them into DRY_ROOT/cpu_run, so that a second dry run goes on from
# there. runs_cpu/ is never read or written by a dry run.
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
    CARRY=$DRY_ROOT/carry
    TRAIN_MINUTES=${TRAIN_MINUTES:-0.1}
else
    OUT=${OUT:?set by the device tool}
    CARRY=.gpu_carry
fi
RUN_DIR=$CARRY/run # the snapshot of the CPU run, continued here
WORK=$(mktemp -d /tmp/gpu_window_work.XXXX)
mkdir -p "$OUT"
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

# deliver: the files back into $OUT (at most 8, each under 16 MiB): the training states there
# are, the run's small files and weights as one archive (about 5 MiB), results.json (window.log
# is already there). Run at the end, and by the trap if the script is stopped.
BEFORE='{}'
deliver() {
    local stage name small=()
    for stage in 1 2; do
        [ -f "$RUN_DIR/state/stage$stage.safetensors" ] &&
            cp "$RUN_DIR/state/stage$stage.safetensors" "$OUT/"
    done
    for name in config.toml log.csv validation.csv loss_curves.png fnet_stage1.safetensors \
        fnet_best.safetensors fnet.safetensors; do
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
    [ -d "$DATA_SRC/MSRS_test" ] || DATA_SRC=../shared/data
    for set in MSRS_train RoadScene_train MSRS_test; do
        for sub in ir vi; do
            mkdir -p "$DRY_ROOT/data/$set/$sub"
            find "$DATA_SRC/$set/$sub" -maxdepth 1 -type f | sort | head -3 |
                xargs -I{} cp -n {} "$DRY_ROOT/data/$set/$sub/"
        done
    done
    DATA_DIRS=("$DRY_ROOT/data/MSRS_train" "$DRY_ROOT/data/RoadScene_train")
    $PY benchmarks/gpu_bench.py tiny-weights "$WORK/tiny.safetensors"
    MODEL_ARGS=(--weights "$WORK/tiny.safetensors")
    if [ ! -f "$DRY_ROOT/cpu_run/config.toml" ]; then
        # The stand-in for runs_cpu/default: the CPU recipe on the tiny model and data, stopped
        # by its time box (exit 75) like a CPU run that is still going.
        echo "== dry run: a stand-in CPU run in $DRY_ROOT/cpu_run"
        $PY -m fnet_deploy train --config configs/cpu.toml --out "$DRY_ROOT/cpu_run" \
            --data "${DATA_DIRS[0]}" --data "${DATA_DIRS[1]}" \
            --val-data "$DRY_ROOT/data/MSRS_test" --val-data "${DATA_DIRS[1]}" \
            --crop 32 --set model.filters=4 --set model.kernel_size=3 --set model.iterations=2 \
            --set stage1.iterations=2000 --set stage2.iterations=2000 --set val.pairs=1 \
            --set val.crop=48 --set log.log_every=5 --set log.checkpoint_every=10 \
            --set log.validate_every=50 --max-time-min 0.1
    fi
    CARRY=$CARRY RUN=$DRY_ROOT/cpu_run bash benchmarks/gpu_window_prepare.sh
else
    MODEL_ARGS=()
    timeout 20 nvidia-smi | tee "$WORK/nvidia-smi.txt"
    if ! timeout 60 $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    then
        echo "gpu_window: torch sees no CUDA device; stopping" >&2
        exit 1
    fi
    if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
        timeout 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target /tmp/site "$CARRY"/wheels/*.whl && export PYTHONPATH=/tmp/site
    fi
    if ! timeout 30 $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .; then
        echo "pip could not install the package: running it from the checkout (PYTHONPATH)"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    DATA_DIRS=("$CARRY/data/MSRS_train" "$CARRY/data/RoadScene_train")
    if [ ! -f "$RUN_DIR/config.toml" ] || [ ! -f "$CARRY/train_args" ]; then
        echo "gpu_window: no snapshot of the CPU run in $CARRY (run gpu_window_prepare.sh" \
            "here and name .gpu_carry in carry): benchmarks only, no training" >&2
        PARTS=${PARTS//train/}
    fi
    if [ ! -d "${DATA_DIRS[0]}/ir" ] || [ ! -d "${DATA_DIRS[1]}/ir" ]; then
        echo "gpu_window: no MSRS_train / RoadScene_train pairs in $CARRY/data: no error" \
            "measurement on real pairs" >&2
        PARTS=${PARTS//errors/}
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
        step_args=(--device cpu --threads 1 --sizes 16x2 --variants eager nhwc --repeats 1)
    else
        step_args=(--device cuda --sizes 128x2 --variants eager nhwc graph graph-nhwc
            --repeats 15)
    fi
    run_part step 40 --int $PY benchmarks/bench_train_step.py "${step_args[@]}" \
        --stages 1 2 --json "$WORK/train_step.json"
    LAYOUT=$($PY benchmarks/gpu_bench.py choose-layout "$WORK/train_step.json")
    echo "channels_last for training: ${LAYOUT:-unchanged (no measurement)}"
fi

if wanted bench; then
    # shellcheck disable=SC2054  # the commas belong to fnet-deploy's list options
    if [ "$DRY" = 1 ]; then
        bench_args=(--device cpu --threads 1 --backend torch-training,torch,torch-graph
            --precision fp32 --size 64x48 --batch 1 --warmup 1 --iterations 2 --no-peaks)
    else
        bench_args=(--device cuda
            --backend torch-training,torch,torch-graph,torch-nhwc-graph,torch-col2im-graph
            --precision fp32,fp16 --size 640x480,640x512 --batch 1,4
            --warmup 3 --iterations 25 --max-time-s 0.5)
    fi
    run_part bench 75 --int $PY -m fnet_deploy bench "${bench_args[@]}" "${MODEL_ARGS[@]}" \
        --json "$WORK/bench.json"
fi

if wanted errors; then
    if [ "$DRY" = 1 ]; then
        error_args=(--device cpu --pairs 1 --crop 48)
    else
        error_args=(--device cuda --pairs 6)
    fi
    run_part errors 25 $PY benchmarks/gpu_bench.py errors "${error_args[@]}" "${MODEL_ARGS[@]}" \
        --data "${DATA_DIRS[@]}" --json "$WORK/errors.json"
fi

if wanted compile && [ "$DRY" != 1 ]; then
    run_part compile 50 --int $PY -m fnet_deploy bench --device cuda --backend torch-compile \
        --precision fp16 --size 640x480 --batch 1 --warmup 2 --iterations 25 \
        --max-time-s 0.5 --no-peaks --json "$WORK/compile.json"
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
    # The CPU run's own config, on this machine's device and with the carried data
    # (train_args: --data / --val-data of .gpu_carry/data, --stage 2 once stage I is done).
    mapfile -t carried_args <"$CARRY/train_args"
    train_args=(--out "$RUN_DIR" --resume "${carried_args[@]}")
    if [ "$DRY" = 1 ]; then
        train_args+=(--device cpu --set threads=1)
    else
        train_args+=(--device cuda --set threads=0)
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
        --max-time-min "$minutes"
    rc=$?
    printf '%s\t%s\t%s\n' train "$rc" "$(($(date +%s) - start))" >>"$WORK/parts.tsv"
    case $rc in
        0) echo "== train: the recipe is complete" ;;
        75) echo "== train: time box reached, state saved; collect it (gpu_window_collect.sh)" ;;
        *) echo "== train: exit $rc (see above); the last checkpoint is in $RUN_DIR/state" ;;
    esac
fi

deliver
rm -rf "$WORK"
echo "== files in $OUT after $(($(date +%s) - T0)) s:"
ls -l "$OUT"
if [ "$DRY" = 1 ]; then
    # What a session does here after a real window: adopt the GPU's branch if it is ahead.
    RECORDS=$DRY_ROOT/records bash benchmarks/gpu_window_collect.sh "$OUT" "$DRY_ROOT/cpu_run"
fi
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit 0
