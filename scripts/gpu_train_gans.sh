#!/usr/bin/env bash
# Paper 001's per-minority-class WGANs (issue 15) trained on a lent GPU, all at once, each stopped after
# MINUTES. Paper 001's settings: batch 16, n_critic 4 and lr 2e-4, Prophase n_critic 10 and lr 2e-5.
# Back in OUT (tars under 16 MiB): each run's config, critic curve, sample grid and fp16 EMA generator
# snapshots (WGAN-div: the last and the one nearest half-way, for selection by KID; WGAN-GP: the last).
#   bash scripts/gpu_train_gans.sh DATA.npz RUNS_DIR OUT_DIR MINUTES
set -euo pipefail
# The device has no internet: install this checkout alone (training/ and export/ live under napari_cellsynth).
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
data=$1 runs=$2 out=$3 minutes=$4
for loss in wgan-div wgan-gp; do
  for cls in Prophase Metaphase Anaphase Telophase; do
    settings=(--n-critic 4 --lr 2e-4)
    [ "$cls" = Prophase ] && settings=(--n-critic 10 --lr 2e-5)
    run="$runs/$loss-$cls"
    mkdir -p "$run"
    python3 -m napari_cellsynth.cli train gan --data "$data" --label-map jurkat7 --split-seed 0 --only-class "$cls" \
      --loss "$loss" "${settings[@]}" --steps 1000000 --snapshot-every 1000 --sample-every 100000000 \
      --ckpt-every 1000 --max-minutes "$minutes" --quiet --out "$run" > "$run/log.txt" 2>&1 &
  done
done
wait
python3 - "$runs" "$out" <<'PY'
import sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
groups = {"gan-div-a": ["wgan-div-Prophase", "wgan-div-Metaphase"], "gan-div-b": ["wgan-div-Anaphase", "wgan-div-Telophase"],
          "gan-gp": [f"wgan-gp-{c}" for c in ("Prophase", "Metaphase", "Anaphase", "Telophase")]}
for group, names in groups.items():
    with tarfile.open(out / f"{group}.tar", "w") as tar:
        for name in names:
            run = runs / name
            snaps = sorted((run / "snapshots").glob("G_*.pt"))
            keep = {snaps[-1]} if snaps else set()
            if snaps and name.startswith("wgan-div"):
                keep.add(snaps[len(snaps) // 2 - 1] if len(snaps) > 1 else snaps[-1])
            for path in [*run.glob("*.json"), *run.glob("*.png"), run / "log.txt", *sorted(keep)]:
                if path.is_file():
                    tar.add(path, arcname=f"{name}/{path.relative_to(run)}")
    print(group, (out / f"{group}.tar").stat().st_size // 2**20, "MiB")
PY
