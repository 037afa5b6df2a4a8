#!/usr/bin/env bash
# The squeeze experiments of docs/RESULTS.md: students of each minilm-l6 GLUE teacher
# (scripts/reproduce_teachers.sh makes them), then scripts/summarize_squeeze.py tabulates.
# Usage: SQUEEZEBERT_GLUE_DIR=... scripts/squeeze_experiments.sh RUNS_DIR TASK [VARIANT ...]
# Environment: EPOCHS (1), SEED (42; others write student-TASK-VARIANT-sSEED), THREADS (2), BENCH_REPEATS (20)
# Variants: lowrank lowrank-hidden lowrank-aug lowrank-aug6 lowrank-aug-hidden grouped grouped-block grouped-random grouped-4layers grouped-lowrank
#           speedup2 speedup3 speedup5 (session 7: the shape chosen by measured latency, squeeze's other defaults)
# (augmentation and hidden-state weight are explicit in each: squeeze's defaults became --augment auto
#  in session 3 and --hidden-weight auto in session 4, after these variants were measured; with the
#  defaults, small tasks get lowrank-aug-hidden and SST-2 gets lowrank)
set -euo pipefail
GLUE=${SQUEEZEBERT_GLUE_DIR:?set SQUEEZEBERT_GLUE_DIR to the GLUE data directory}
RUNS=${1:?runs directory}
TASK=${2:?task}
shift 2
VARIANTS=${*:-lowrank grouped grouped-block grouped-random grouped-4layers}
EPOCHS=${EPOCHS:-1}
SEED=${SEED:-42}
SUFFIX=""; [ "$SEED" = 42 ] || SUFFIX="-s$SEED"   # other seeds get their own run directories
if [ "$TASK" = sst2 ]; then LEN=64; else LEN=128; fi
for v in $VARIANTS; do
  case $v in
    lowrank)         args=(--construction lowrank --augment 0) ;;
    lowrank-hidden)  args=(--construction lowrank --augment 0 --hidden-weight 1.0) ;;
    lowrank-aug)     args=(--construction lowrank --augment 3 --hidden-weight 0) ;;
    lowrank-aug6)    args=(--construction lowrank --augment 6 --hidden-weight 0) ;;
    lowrank-aug-hidden) args=(--construction lowrank --augment 3 --hidden-weight 1.0) ;;
    grouped)         args=(--construction grouped --augment 0) ;;
    grouped-block)   args=(--construction grouped --augment 0 --init block) ;;
    grouped-random)  args=(--construction grouped --augment 0 --init random) ;;
    grouped-4layers) args=(--construction grouped --augment 0 --layers 0,2,3,5) ;;
    grouped-lowrank) args=(--construction grouped-lowrank --augment 0) ;;
    speedup2)        args=(--speedup 2) ;;
    speedup3)        args=(--speedup 3) ;;
    speedup5)        args=(--speedup 5) ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  /usr/bin/time -f "$TASK $v wall %e s" squeezebert squeeze --teacher "$RUNS/teacher-$TASK" --task "$TASK" \
    --data-dir "$GLUE" --out "$RUNS/student-$TASK-$v$SUFFIX" --epochs "$EPOCHS" --batch-size 32 --lr 1e-4 \
    --max-length "$LEN" --seed "$SEED" --num-threads "${THREADS:-2}" --bench-threads "${THREADS:-2}" --bench-repeats "${BENCH_REPEATS:-20}" "${args[@]}"
done
