#!/usr/bin/env bash
# The simulated sets the shipped default model and the CPU recipe were trained and evaluated
# on (docs/training.md). Usage: scripts/simulate_sets.sh DATA_DIR [TRAIN_PER_SNR]
# Train, validation and test sets have disjoint seeds; the out-of-distribution sets use
# presets the model never saw in training (13C-like, 19F-like spectra).
set -euo pipefail
out=${1:?usage: scripts/simulate_sets.sh DATA_DIR [TRAIN_PER_SNR]}
per_snr=${2:-1500}
sim() { nmrladder simulate --no-progress --rungs 4 --length 16384 "$@"; }
for snr in 3 5 10 20 50; do
  sim --out "$out/train_snr$snr" --samples "$per_snr" --snr "$snr" --T 1.5:3 \
      --nonlinear-drift 0.3 --seed $((100 + snr))
done
for snr in 5 10 50; do
  sim --out "$out/val_snr$snr" --samples 100 --snr "$snr" --T 2 --seed $((200 + snr))
  sim --out "$out/test_snr$snr" --samples 200 --snr "$snr" --T 2 --seed $((300 + snr))
done
for nucleus in 13C 19F; do
  sim --out "$out/ood_${nucleus}_snr5" --samples 100 --snr 5 --T 2 --nucleus "$nucleus" --seed 400
done
