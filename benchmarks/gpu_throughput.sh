#!/usr/bin/env bash
# The prepared GPU measurement (docs/gpu.md): training throughput of the paper presets
# (precision x XLA, benchmarks/train_throughput.py) and a 3-minute imhn_mobile training
# run whose loss must fall, all within GPU_BENCH_BUDGET_S seconds (default 480).
#
#   bash benchmarks/gpu_throughput.sh [OUT_DIR]        # default runs/gpu_throughput
#
# OUT_DIR receives one JSON per throughput run, train_run.json, log.txt and
# summary.json (everything, plus what was skipped or failed, and a Markdown table).
# Throughput runs go in priority order while their share of the budget lasts (the training
# run's share is kept for it); a run that would not start in time is listed as skipped, one
# stopped when the share ran out as timed_out.
# Environment:
#   GPU_BENCH_SMOKE=1         CPU miniature of the same logic: tiny presets, few steps,
#                             no install, no GPU needed (docs/gpu.md)
#   GPU_BENCH_BUDGET_S=480    whole-script budget in seconds, install included (smoke: 600)
#   GPU_BENCH_SKIP_INSTALL=1  never pip-install the gpu extra
# Exit status: 0 when the training loss fell and no run crashed (skipped or timed-out runs
# are reported, not errors); 1 otherwise; 2 when set-up failed (no GPU, install failed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${1:-runs/gpu_throughput}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
LOG=$OUT/log.txt
: >"$LOG"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
START=$(date +%s)
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

if [[ ${GPU_BENCH_SMOKE:-0} == 1 ]]; then
  BIG=imhn_test B1=2 B2=4 TD=fasterpose_tiny TDB=4 MOBILE=imhn_test
  STEPS=(--steps 3 --warmup_steps 1) IMAGES=16
  TRAIN_ARGS=(--epochs 4 --steps_per_epoch 6 --batch_size 4 --time_budget_s 0)
  BUDGET=${GPU_BENCH_BUDGET_S:-600} TRAIN_RESERVE=${GPU_BENCH_TRAIN_RESERVE_S:-240} MIN_RUN=60
else
  BIG=imhn_4s_512 B1=16 B2=32 TD=fasterpose_r50_256x192 TDB=128 MOBILE=imhn_mobile
  STEPS=(--steps 20 --warmup_steps 3) IMAGES=128
  # imhn_mobile's recipe (SGD, focal L2, mixed_float16 on a GPU), stopped after 180 s.
  TRAIN_ARGS=(--epochs 1000 --steps_per_epoch 50 --time_budget_s 180)
  BUDGET=${GPU_BENCH_BUDGET_S:-480} TRAIN_RESERVE=${GPU_BENCH_TRAIN_RESERVE_S:-250} MIN_RUN=60
  HAS_GPU="import sys, tensorflow as tf; sys.exit(not tf.config.list_physical_devices('GPU'))"
  if ! $PY -c "$HAS_GPU" >>"$LOG" 2>&1; then
    if [[ ${GPU_BENCH_SKIP_INSTALL:-0} == 1 ]]; then
      say "error: TensorFlow sees no GPU (and GPU_BENCH_SKIP_INSTALL=1)"; exit 2
    fi
    say "installing the gpu extra (pip install -e .[gpu]) ..."
    $PY -m pip install -q -e ".[gpu]" >>"$LOG" 2>&1 || { say "error: pip install -e .[gpu] failed (see $LOG)"; exit 2; }
    $PY -c "$HAS_GPU" >>"$LOG" 2>&1 || { say "error: TensorFlow sees no GPU after installing the gpu extra (driver, CUDA libraries? see $LOG)"; exit 2; }
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$LOG" 2>&1
fi
say "output in $OUT; budget ${BUDGET} s (${TRAIN_RESERVE} s kept for the training run)"

FAILED=() SKIPPED=() TIMED_OUT=()
throughput() {  # name preset batch precision xla(on|off)
  local name=$1 preset=$2 batch=$3 precision=$4 xla=$5
  local left=$((START + BUDGET - TRAIN_RESERVE - $(date +%s)))
  if ((left < MIN_RUN)); then say "skip $name (${left} s left)"; SKIPPED+=("$name"); return; fi
  local flag=--no-jit_compile; [[ $xla == on ]] && flag=--jit_compile
  say "$name: $preset batch $batch $precision XLA $xla (at most ${left} s)"
  timeout "$left" $PY benchmarks/train_throughput.py --preset "$preset" --batch_size "$batch" \
    --precision "$precision" $flag "${STEPS[@]}" --images "$IMAGES" --data_dir "$DATA/$preset" \
    >"$DATA/stdout" 2>>"$LOG"
  local rc=$?
  cat "$DATA/stdout" >>"$LOG"
  if ((rc == 0)) && tail -n 1 "$DATA/stdout" | $PY -c "import json,sys; json.loads(sys.stdin.read())" 2>/dev/null; then
    tail -n 1 "$DATA/stdout" >"$OUT/$name.json"
    say "  $(tail -n 1 "$DATA/stdout" | cut -c1-200)"
  elif ((rc == 124)); then
    say "  $name stopped: the throughput share of the budget ran out"; TIMED_OUT+=("$name")
  else
    say "  $name failed (exit $rc; see $LOG)"; FAILED+=("$name")
  fi
}

# Priority order: the comparison with the authors first, then the rest of the grid.
throughput big_b${B2}_mixed_float16_noxla $BIG $B2 mixed_float16 off
throughput td_b${TDB}_mixed_float16_noxla $TD $TDB mixed_float16 off
throughput big_b${B1}_mixed_float16_noxla $BIG $B1 mixed_float16 off
throughput big_b${B2}_mixed_float16_xla $BIG $B2 mixed_float16 on
throughput big_b${B2}_float32_noxla $BIG $B2 float32 off
throughput big_b${B1}_float32_noxla $BIG $B1 float32 off
throughput big_b${B1}_mixed_float16_xla $BIG $B1 mixed_float16 on
throughput td_b${TDB}_mixed_float16_xla $TD $TDB mixed_float16 on
throughput big_b${B2}_float32_xla $BIG $B2 float32 on
throughput big_b${B1}_float32_xla $BIG $B1 float32 on

# The training run: the preset's own recipe on a synthetic set; its loss must fall.
left=$((START + BUDGET - $(date +%s)))
say "training $MOBILE (${TRAIN_ARGS[*]}; at most ${left} s)"
timeout "$((left > 30 ? left : 30))" $PY training/train.py --preset "$MOBILE" \
  --model_dir "$DATA/train" --data_dir "$DATA/train_data" "${TRAIN_ARGS[@]}" \
  --eval_max_images 10 --noexport_int8 --nodemo_image \
  --override synthetic_train_images=400 --override synthetic_val_images=10 >>"$LOG" 2>&1
train_rc=$?
say "training exit $train_rc"

$PY - "$OUT" "$DATA/train" "$train_rc" "${FAILED[*]:-}" "${SKIPPED[*]:-}" "${TIMED_OUT[*]:-}" \
  <<'EOF' | tee -a "$LOG"
"""Checks the training run's loss and writes summary.json with a Markdown table."""
import csv, json, os, sys

out, train_dir, train_rc, failed, skipped, timed_out = sys.argv[1:]
runs = []
for name in sorted(os.listdir(out)):
    if name.endswith(".json") and name not in ("summary.json", "train_run.json"):
        with open(os.path.join(out, name)) as f:
            runs.append(dict(json.load(f), name=name[:-5]))
train = {"exit_status": int(train_rc), "loss_fell": False}
hist = os.path.join(train_dir, "history.csv")
if os.path.isfile(hist):
    with open(hist) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    metrics = {}
    if os.path.isfile(os.path.join(train_dir, "metrics.json")):
        with open(os.path.join(train_dir, "metrics.json")) as f:
            metrics = json.load(f)
    # Falls: the mean of the last two epochs' losses is below 90 % of the first epoch's.
    last = sum(losses[-2:]) / len(losses[-2:]) if losses else None
    train.update(epochs=len(losses), first_epoch_loss=losses[0] if losses else None,
                 last_epochs_loss=last, loss_fell=len(losses) >= 2 and last < 0.9 * losses[0],
                 steps_per_epoch=metrics.get("steps_per_epoch"), policy=metrics.get("policy"),
                 train_seconds=metrics.get("train_seconds"), val_AP=metrics.get("val", {}).get("AP"))
with open(os.path.join(out, "train_run.json"), "w") as f:
    json.dump(train, f, indent=2)
rows = ["| preset | batch | precision | XLA | images/s | ms/step (median) | first step s | peak MB |",
        "|---|---:|---|---|---:|---:|---:|---:|"]
for r in sorted(runs, key=lambda r: (r["preset"], r["batch_size"], r["precision"], r["jit_compile"])):
    rows.append(f"| {r['preset']} | {r['batch_size']} | {r['precision']} | "
                f"{'on' if r['jit_compile'] else 'off'} | {r['images_per_s']} | "
                f"{r['step_ms_median']} | {r['first_step_s']} | {r['peak_mb']} |")
device = runs[0]["device"] if runs else None
summary = {"device": device, "runs": runs, "train": train, "failed": failed.split(),
           "timed_out": timed_out.split(), "skipped": skipped.split(), "table": "\n".join(rows)}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print("\n".join(rows))
print("device:", json.dumps(device))
print("training:", json.dumps(train))
print("failed:", failed or "none", "| timed out:", timed_out or "none", "| skipped:", skipped or "none")
sys.exit(0 if train["loss_fell"] and not failed else 1)
EOF
status=$?
say "done in $(($(date +%s) - START)) s; exit $status"
exit $status
