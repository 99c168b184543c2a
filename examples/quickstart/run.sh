#!/usr/bin/env bash
# The quick-start, end to end: train -> evaluate (table, JSON, parity plot) -> export -> LAMMPS MD.
# Run from the repository root (`make demo` does). Every step is a plain gmnn command.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out=demo_output
data=../shared/data/rmd17_ethanol_100.xyz
mkdir -p "$out"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "gmnn-train: GM-NN on 80 rMD17 ethanol frames (PBE/def2-SVP)"
gmnn-train "$here/train.yaml"

step "gmnn-eval: errors on the 20 held-out frames, parity plot"
gmnn-eval "$out/train/best.ckpt" "$data" --energy-unit kcal/mol --index 80: \
    --json "$out/eval_metrics.json" --plot "$out/parity"
python -c "from gmnn.plotting import training_curves; print('wrote', training_curves('$out/train/metrics.csv', '$out/training_curves.png'))"

step "gmnn-export: TorchScript model file for LAMMPS"
gmnn-export "$out/train/best.ckpt" -o "$out/ethanol.pt" --dtype float32

if [ -f "$here/../lammps/run_demo.sh" ]; then
    step "LAMMPS: pair_style gmnn MD of a liquid-ethanol box"
    bash "$here/../lammps/run_demo.sh" "$out/ethanol.pt" "$out/lammps"
fi
printf '\nDone. Results in %s/ (metrics.csv, eval_metrics.json, parity_*.png, training_curves.png, ethanol.pt)\n' "$out"
