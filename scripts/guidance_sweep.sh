#!/usr/bin/env bash
# Guidance settings on a DDPM bundle's rare class, judged by two zoo classifiers that take no part in making the cells:
# the share called the class (4-class classifier) and, inside it, the mitotic phase the 7-class classifier names.
#   bash scripts/guidance_sweep.sh OUT [GENERATOR] [CLASS] [COUNT] [GUIDE]
# Each setting is one `cellsynth generate` and two `cellsynth classify` runs (a rerun skips what is on disk);
# scripts/guidance_sweep_summary.py prints the table.
set -euo pipefail
out=$1 gen=${2:-zoo:ddpm-jurkat4-cut10-v} cls=${3:-M} count=${4:-128} guide=${5:-}
cs=${CELLSYNTH:-cellsynth}
declare -A settings=(
  [w1]=""
  [w1.5]="--guidance 1.5"
  [w1.5-i]="--guidance 1.5 --guidance-interval 0.28 5.42"
  [w2-i]="--guidance 2 --guidance-interval 0.28 5.42"
  [w3-i]="--guidance 3 --guidance-interval 0.28 5.42"
  [w2-mid]="--guidance 2 --guidance-interval 0.5 3"
)
if [ -n "$guide" ]; then
  settings[auto1.5]="--guidance 1.5 --guide $guide"
  settings[auto2]="--guidance 2 --guide $guide"
  settings[auto2-i]="--guidance 2 --guide $guide --guidance-interval 0.28 5.42"
fi
for name in "${!settings[@]}"; do
  dir=$out/$name
  # shellcheck disable=SC2086
  [ -f "$dir/${cls}_seed0.json" ] || $cs generate --model "$gen" --class "$cls" --count "$count" --seed 0 \
      --batch-size 32 ${settings[$name]} --out "$dir" --quiet
  for clf in classifier-jurkat4 classifier-jurkat7; do
    [ -f "$out/$name.$clf.csv" ] || $cs classify "$dir" --model "zoo:$clf" --out "$out/$name.$clf.csv" --quiet
  done
done
