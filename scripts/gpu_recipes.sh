#!/usr/bin/env bash
# Issue 14's recipe comparison on a lent GPU: training.experiments.recipes over the data sets in SETS
# (jurkat_cells.npz beside training.data.recipe_datasets' output), every run on the GPU, JOBS at a time,
# stopped after MINUTES (a rerun resumes). Back: TAR (e.g. $OUT/jurkat.tar) with each run's config,
# history, log and test metrics, and the summary. Several groups may run at once with distinct TARs.
#   bash scripts/gpu_recipes.sh SETS TAR MINUTES JOBS DATASETS... -- RECIPES...
set -uo pipefail
sets=$1 tar=$2 minutes=$3 jobs=$4
shift 4
datasets=() recipes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do datasets+=("$1"); shift; done
shift
recipes=("$@")
runs=/tmp/recipes-$(basename "$tar" .tar)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
timeout "$((minutes * 60))" python3 -m napari_cellsynth.training.experiments.recipes --sets "$sets" --jurkat "$sets/jurkat_cells.npz" \
  --datasets "${datasets[@]}" --recipes "${recipes[@]}" --seeds ${SEEDS:-0 1 2 3 4} --jobs "$jobs" --threads 2 \
  --device cuda --out "$runs"
echo "experiment exit $?"
# the summary of whatever finished (also after the time limit)
python3 - "$runs" "${datasets[*]}" "${recipes[*]}" <<'PY'
import sys
from pathlib import Path
from napari_cellsynth.training.experiments.recipes import markdown, summarise
from napari_cellsynth.core.atomic import write_json_atomic
runs = Path(sys.argv[1])
summary = summarise(runs, sys.argv[2].split(), sys.argv[3].split(), list(range(20)))
write_json_atomic(runs / "summary.json", summary)
(runs / "summary.md").write_text(markdown(summary))
print(markdown(summary))
PY
cd "$runs" && tar cf "$tar" summary.json summary.md $(find . -name metrics_test.json -o -name history.json -o -name config.json -o -name log.txt)
