#!/usr/bin/env bash
# Training throughput with 1 process x 1 thread, 1 process x 2 threads and 2 processes x 1 thread
# (torchrun), interleaved, REPEATS times; prints each run's tokens/s from its metrics.json (real,
# non-padding tokens of the whole step batch over rank 0's training time).
#   scripts/bench_train_scaling.sh OUT_DIR [REPEATS]     (PYTHON=... to pick the interpreter)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [REPEATS]}
repeats=${2:-2}
py=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)
train=$here/src/squeezebert/demo_data/train.tsv
common=(--model minilm-l6 --train "$train" --text-column sentence --epochs 1 --batch-size 32 --max-length 64
        --log-every 5 --seed 1)
mkdir -p "$out"
tokens() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["train"]["tokens_per_s"])' "$1/metrics.json"; }
for r in $(seq 1 "$repeats"); do
    rm -rf "$out/1p1t-$r" "$out/1p2t-$r" "$out/2p1t-$r"
    "$py" -m squeezebert finetune "${common[@]}" --out "$out/1p1t-$r" --num-threads 1 > /dev/null 2>&1
    echo "repeat $r 1x1 $(tokens "$out/1p1t-$r")"
    "$py" -m squeezebert finetune "${common[@]}" --out "$out/1p2t-$r" --num-threads 2 > /dev/null 2>&1
    echo "repeat $r 1x2 $(tokens "$out/1p2t-$r")"
    OMP_NUM_THREADS=1 "$py" -m torch.distributed.run --standalone --nproc-per-node 2 -m squeezebert finetune \
        "${common[@]}" --out "$out/2p1t-$r" --num-threads 1 > /dev/null 2>&1
    echo "repeat $r 2x1 $(tokens "$out/2p1t-$r")"
done
