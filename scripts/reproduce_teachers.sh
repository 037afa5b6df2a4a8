#!/usr/bin/env bash
# Recreate the fine-tuned minilm-l6 teachers recorded in docs/RESULTS.md (the squeeze teachers).
# Usage: SQUEEZEBERT_GLUE_DIR=../shared/data/glue scripts/reproduce_teachers.sh [OUT_DIR] [TASK ...]
set -euo pipefail
GLUE=${SQUEEZEBERT_GLUE_DIR:?set SQUEEZEBERT_GLUE_DIR to the GLUE data directory}
OUT=${1:-runs}
shift || true
TASKS=${*:-sst2 cola mrpc stsb rte}
for task in $TASKS; do
  if [ "$task" = sst2 ]; then  # 67k short sentences: 3 epochs at length 64 (EPOCHS=2: the first teacher)
    args=(--epochs "${EPOCHS:-3}" --max-length 64 --eval-every 700)
  else                         # small tasks, some with long pairs: 3 epochs at length 128
    args=(--epochs 3 --max-length 128)
  fi
  /usr/bin/time -f "$task wall %e s" squeezebert finetune --model minilm-l6 --task "$task" --data-dir "$GLUE" \
    --out "$OUT/teacher-$task" --batch-size 32 --lr 5e-5 --seed 42 --num-threads "${THREADS:-2}" "${args[@]}"
done
