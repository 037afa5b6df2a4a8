#!/usr/bin/env bash
# Does --unlabeled help, against or together with the perturbed copies? (docs/RESULTS.md, session 7)
# A custom task with few labels: TRAIN (JSONL, text/label) and DEV, a fixed pruned student, and
# UNLABELED (one text per line). Usage: scripts/unlabeled_experiment.sh TEACHER TRAIN DEV UNLABELED OUT_DIR
# Session 7: TRAIN = 2,000 SST-2 training sentences, UNLABELED = 20,000 others (labels dropped),
# DEV = SST-2 dev, TEACHER = the minilm-l6 SST-2 teacher.
set -euo pipefail
TEACHER=${1:?teacher}; TRAIN=${2:?train}; DEV=${3:?dev}; UNLABELED=${4:?unlabeled}; OUT=${5:?out dir}
common=(--teacher "$TEACHER" --train "$TRAIN" --dev "$DEV" --construction pruned --num-layers 4 --heads 3
  --ffn 384 --epochs 2 --max-length 64 --num-threads 2 --bench-threads 2 --bench-repeats 3 --no-int8
  --no-bf16 --no-openvino)
for v in copies unlabeled both; do
  case $v in
    copies) extra=(--augment auto) ;;
    unlabeled) extra=(--augment 0 --unlabeled "$UNLABELED") ;;
    both) extra=(--augment 3 --unlabeled "$UNLABELED") ;;
  esac
  /usr/bin/time -f "unlabeled-$v wall %e s" squeezebert squeeze "${common[@]}" "${extra[@]}" --out "$OUT/unlabeled-$v"
done
