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

# The model has only seen isolated molecules (rMD17 is gas phase), so the box is a dilute
# vapour whose molecules start beyond the cutoff from each other; a liquid box would ask
# the model about intermolecular contacts it never saw (it heats up to thousands of K).
step "LAMMPS: pair_style gmnn, NVT MD of 512 ethanol molecules (4608 atoms, vapour), 2 MPI ranks"
python "$here/../lammps/build_ethanol_box.py" --out "$out/ethanol.data" --density 0.08 --min-distance 5.5
OMP_NUM_THREADS=1 mpirun -np 2 lmp -in "$here/../lammps/in.ethanol" -log "$out/log.lammps" \
    -var model "$out/ethanol.pt" -var data "$out/ethanol.data" -var steps "${DEMO_MD_STEPS:-200}"
grep -E "^(Loop time|Performance)" "$out/log.lammps"

printf '\nDone. Results in %s/: metrics.csv, eval_metrics.json, parity_*.png, training_curves.png, ethanol.pt, log.lammps\n' "$out"
