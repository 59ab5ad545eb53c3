#!/usr/bin/env bash
# Regenerate the data of the all-nucleus default model and train it (docs/default-model.md).
#
#   scripts/train_default.sh DATA_DIR RUN_DIR [PER_SET]
#
# Every simulator family (1h, 1h-benchtop, 13c, 19f, 31p) at rung-0 SNR 3, 5, 10, 20 and 50,
# PER_SET ladders each (default 300) with seeds 1000 + 10 * family + SNR index, plus a
# validation set; then `nmrladder train` with train/configs/families.toml. Run it again to
# resume: existing data sets are kept and the run continues from its last checkpoint.
set -euo pipefail
data=${1:?usage: scripts/train_default.sh DATA_DIR RUN_DIR [PER_SET]}
run=${2:?usage: scripts/train_default.sh DATA_DIR RUN_DIR [PER_SET]}
per_set=${3:-300}
families=(1h 1h-benchtop 13c 19f 31p)
snrs=(3 5 10 20 50)
sim() { nmrladder simulate --no-progress --rungs 4 --length 16384 --workers 2 "$@"; }
train_sets=()
for f in "${!families[@]}"; do
  for s in "${!snrs[@]}"; do
    out="$data/train_${families[$f]}_snr${snrs[$s]}"
    seed=$((1000 + 10 * f + s))
    [[ -f $out/ladders.h5 ]] || sim --out "$out" --samples "$per_set" --snr "${snrs[$s]}" \
        --T 1.5:3 --nonlinear-drift 0.3 --family "${families[$f]}" --seed "$seed"
    train_sets+=(--data "$out")
  done
done
val="$data/val_13c_snr5"
[[ -f $val/ladders.h5 ]] || sim --out "$val" --samples 64 --snr 5 --T 2 --family 13c --seed 2000
if [[ -f $run/config.toml ]]; then
  resume=(--resume)
else
  resume=(--config train/configs/families.toml)
fi
nmrladder train "${resume[@]}" "${train_sets[@]}" --val "$val" --out "$run" --no-progress
