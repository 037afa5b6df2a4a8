#!/usr/bin/env bash
# Issue 15's table: the default `squeeze --speedup 3` student of each minilm-l6 teacher, on five
# GLUE tasks and two custom-data tasks (scripts/make_custom_tasks.py), then
# `python scripts/summarize_squeeze.py --latency RUNS/latency-*` tabulates.
# Usage: SQUEEZEBERT_GLUE_DIR=... scripts/latency_tasks.sh RUNS_DIR [TASK ...]
#   TASK: sst2 cola mrpc stsb rte (GLUE teachers from scripts/reproduce_teachers.sh RUNS_DIR)
#         short pairs3 (custom data; their teachers are fine-tuned here when missing)
# Environment: SEED (42; others write latency-TASK-sSEED), SPEEDUP (3). A finished run is skipped.
set -euo pipefail
GLUE=${SQUEEZEBERT_GLUE_DIR:?set SQUEEZEBERT_GLUE_DIR to the GLUE data directory}
RUNS=${1:?runs directory}
shift
TASKS=${*:-short cola stsb mrpc rte pairs3 sst2}
SEED=${SEED:-42}
SUFFIX=""; [ "$SEED" = 42 ] || SUFFIX="-s$SEED"
CUSTOM="$RUNS/custom-data"
[ -f "$CUSTOM/pairs3-dev.csv" ] || python "$(dirname "$0")/make_custom_tasks.py" "$GLUE" "$CUSTOM"
for task in $TASKS; do
  case $task in
    short)  data=(--train "$CUSTOM/short-train.jsonl" --dev "$CUSTOM/short-dev.jsonl"); len=64 ;;
    pairs3) data=(--train "$CUSTOM/pairs3-train.csv" --dev "$CUSTOM/pairs3-dev.csv" --text-column a
                  --text-pair-column b); len=128 ;;
    *)      data=(--task "$task" --data-dir "$GLUE"); len=128 ;;
  esac
  if [ ! -f "$RUNS/teacher-$task/model.safetensors" ]; then
    case $task in short|pairs3) ;; *) echo "no teacher for $task: run scripts/reproduce_teachers.sh" >&2; exit 2 ;; esac
    /usr/bin/time -f "teacher-$task wall %e s" squeezebert finetune --model minilm-l6 "${data[@]}" \
      --out "$RUNS/teacher-$task" --epochs 3 --batch-size 32 --lr 5e-5 --max-length "$len" --seed 42
  fi
  out="$RUNS/latency-$task$SUFFIX"
  [ -f "$out/report.json" ] && { echo "$out: done, skipped"; continue; }
  # squeeze's defaults except the budget and the seed
  /usr/bin/time -f "latency-$task wall %e s" squeezebert squeeze --teacher "$RUNS/teacher-$task" "${data[@]}" \
    --speedup "${SPEEDUP:-3}" --seed "$SEED" --out "$out"
done
