#!/usr/bin/env bash
# The DDPM generators of issue 16 trained on a lent GPU (the `device` tool), several variants at once on
# one GPU, each stopped with a checkpoint after MINUTES. A variant whose RUNS_DIR/NAME/last.pt exists
# resumes from it. Checkpoints come back slimmed into OUT (fp16 weights, no optimizer moments) so that
# they fit the transfer limits; they resume on any machine with --resume.
#   bash scripts/gpu_train_ddpm.sh DATA.npz RUNS_DIR OUT_DIR MINUTES VARIANT...
# variants: v-ztsnr-full v-ztsnr-cut10 v-full eps-full v-ztsnr-jurkat7 (the 7 classes of paper 001's experiment,
# results §12: trained on its own split, since the 4-class split's training part holds 71 of its test crops)
set -euo pipefail
# The device has no internet: install this checkout alone (training/ and export/ live under napari_cellsynth).
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
data=$1 runs=$2 out=$3 minutes=$4
shift 4
common=(--data "$data" --label-map jurkat4 --split-seed 0 --seed 0 --base 32 --channel-mult 1 2 2
        --batch-size 128 --steps 1000000 --sample-every 100000000 --ckpt-every 2000 --snapshot-every 1000 --max-minutes "$minutes"
        --resume --quiet)
declare -A extra=([v-ztsnr-full]="--prediction v --zero-terminal-snr"
                  [v-ztsnr-cut10]="--prediction v --zero-terminal-snr --keep-fraction M=0.1"
                  [v-full]="--prediction v --no-zero-terminal-snr" [eps-full]="--prediction epsilon"
                  [v-ztsnr-jurkat7]="--prediction v --zero-terminal-snr --label-map jurkat7")
for name in "$@"; do
  mkdir -p "$runs/$name"
  # shellcheck disable=SC2086
  python3 -m napari_cellsynth.cli train ddpm "${common[@]}" ${extra[$name]} --out "$runs/$name" > "$runs/$name/log.txt" 2>&1 &
done
wait
for name in "$@"; do
  python3 - "$runs/$name/last.pt" "$out/ddpm-$name.pt" <<'PY'
import sys, torch
state = torch.load(sys.argv[1], weights_only=True, map_location="cpu")
state.pop("optimizer", None)
for key in ("model", "ema"):
    state[key] = {k: v.half() if v.is_floating_point() else v for k, v in state[key].items()}
torch.save(state, sys.argv[2])
PY
done
# the fp16 EMA snapshots (3 MB each) come back too: experiments.kid_curve draws KID over training from them
tar -czf "$out/ddpm-meta.tgz" -C "$runs" $(cd "$runs" && for n in "$@"; do ls -d $n/config.json $n/log.txt $n/*.png $n/snapshots 2>/dev/null; done)
