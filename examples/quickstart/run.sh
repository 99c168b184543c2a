#!/usr/bin/env bash
# The quick-start, end to end, in a few minutes on 2 cores:
#   route 1 (bring 25 CCSD(T) energies): fine-tune the shipped organic model on them -> evaluate;
#   route 2 (per molecule): pre-train on DFT (PBE/def2-SVP, rMD17 ethanol) -> evaluate -> fine-tune
#   on CCSD(T) energies only -> evaluate against held-out CCSD(T);
#   then export -> LAMMPS MD of liquid ethanol with the shipped liquid model (PBE clusters,
#   fine-tuned on CCSD(T)) + D3.
# Run from the repository root (`make demo` does). Every step is a plain gmnn command.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out=demo_output
dft=data/rmd17_ethanol_100.xyz
ccsdt=examples/transfer_learning/data/ethanol_ccsdt_ccpvdz.xyz
mkdir -p "$out"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/8 gmnn-finetune: the shipped organic-pbe-def2svp (477 small molecules, not ethanol) on 25 CCSD(T) energies of ethanol"
gmnn-finetune "$here/finetune_pretrained.yaml" --from organic-pbe-def2svp --overwrite

step "2/8 gmnn-eval: that model against 50 held-out CCSD(T) energies (no DFT of ethanol was needed)"
gmnn-eval "$out/finetune_organic/best.ckpt" "$ccsdt" --index 50: --json "$out/ccsdt_eval_organic.json"

step "3/8 gmnn-train: pre-train on 80 rMD17 ethanol frames (PBE/def2-SVP energies and forces)"
gmnn-train "$here/pretrain.yaml" --overwrite  # a re-run of the demo replaces its runs

step "4/8 gmnn-eval: PBE errors on the 20 held-out frames, parity plot"
gmnn-eval "$out/pretrain/best.ckpt" "$dft" --energy-unit kcal/mol --index 80: \
    --json "$out/pretrain_eval.json" --plot "$out/parity_pbe"
python -c "from gmnn.plotting import training_curves; print('wrote', training_curves('$out/pretrain/metrics.csv', '$out/training_curves.png'))"

step "5/8 gmnn-finetune: 50 CCSD(T)/cc-pVDZ energies, no forces, layer-wise learning rates"
gmnn-finetune "$here/finetune.yaml" --from "$out/pretrain/best.ckpt" --overwrite

step "6/8 gmnn-eval: pre-trained vs fine-tuned against 50 held-out CCSD(T) energies"
echo "(the pre-trained model's error is mostly the 2.5 eV between the energy zeros of PBE and CCSD(T),"
echo " which fine-tuning re-fits first; examples/transfer_learning compares with that zero-shot baseline)"
gmnn-eval "$out/pretrain/best.ckpt" "$ccsdt" --index 50: --json "$out/ccsdt_eval_pretrained.json"
gmnn-eval "$out/finetune/best.ckpt" "$ccsdt" --index 50: --json "$out/ccsdt_eval_finetuned.json" --plot "$out/parity_ccsdt"

step "7/8 gmnn-export: TorchScript model files for LAMMPS"
gmnn-export "$out/finetune/best.ckpt" -o "$out/ethanol_ccsdt.pt" --dtype float32
# The demo's model has seen isolated molecules only (rMD17 is gas phase): in a liquid it heats up
# to thousands of K. The liquid runs a shipped model that has also seen molecules meet: PBE
# monomers, dimers and clusters, then fine-tuned on CCSD(T) monomer energies
# (examples/liquid_ethanol/README.md); D3(BJ) adds the dispersion PBE lacks.
liquid=examples/liquid_ethanol/models/ethanol-liquid-ccsdt.ckpt
gmnn-export "$liquid" -o "$out/ethanol_liquid.pt" --dtype float32

step "8/8 LAMMPS: liquid ethanol, 125 molecules (1125 atoms) at 0.785 g/cm³, shipped liquid model + D3(BJ), NVT 300 K, 2 MPI ranks"
python "$here/../lammps/build_ethanol_box.py" --out "$out/ethanol.data" --molecules 125 --density 0.785
OMP_NUM_THREADS=1 mpirun -np 2 lmp -in "$here/../lammps/in.ethanol" -log "$out/log.lammps" \
    -var model "$out/ethanol_liquid.pt" -var data "$out/ethanol.data" -var steps "${DEMO_MD_STEPS:-200}" \
    -var d3 yes -var d3cut 12 -var d3cn 10
grep -E "^(Loop time|Performance)" "$out/log.lammps"

printf '\nDone. Results in %s/: finetune_organic/, pretrain/ and finetune/ runs, *_eval*.json, parity_*.png, training_curves.png, ethanol_ccsdt.pt, ethanol_liquid.pt, log.lammps\n' "$out"
