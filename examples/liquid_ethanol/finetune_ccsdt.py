"""From DFT to CCSD(T) without losing the intermolecular part (issue 15, item 3): fine-tune the
cluster-aware PBE model (train_liquid.py) on N CCSD(T)/cc-pVDZ monomer energies, in several ways,
and measure monomer CCSD(T) errors AND the PBE errors on dimers/clusters before and after.

    python examples/liquid_ethanol/finetune_ccsdt.py --model runs/liquid_pbe/run/best.ckpt \
        --contacts runs/liquid_pbe/valid.xyz --replay runs/liquid_pbe/train.xyz [--n 25]

Ways: gmnn-finetune's defaults (layer-wise learning rates, 5-fold CV soup); with an L2-SP anchor to
the PBE weights (anchor_weight 1e-2); with the descriptor and first dense layer frozen; co-training
with the PBE dimers/clusters the model was trained on (`finetune.replay_file`: their energies moved
onto the CCSD(T) level by per-element shifts, their forces trained with force_weight 4). Test sets:
CCSD(T) energies of frames 50-99 and forces of 13 structures (examples/transfer_learning/data), and
the dimers/clusters of `--contacts` (PBE, e.g. the cluster-aware run's valid.xyz). The fine-tuned
models live on the CCSD(T) energy scale, so for the PBE contact sets the energy error is taken
after removing its mean (the level's offset); the forces need no such step.
Writes <out>/finetune_ccsdt.json and .md.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TL = ROOT / "examples" / "transfer_learning" / "data"
CCSDT, CCSDT_FORCES = TL / "ethanol_ccsdt_ccpvdz.xyz", TL / "ethanol_ccsdt_ccpvdz_forces.xyz"
WAYS = {"defaults": {}, "anchor 1e-2": {"anchor_weight": 1e-2}, "freeze descriptor + dense0": {"freeze": ["descriptor", "dense0"]},
        "replay PBE contacts": {"replay_file": None}}  # the file: --replay


def replay_contacts(train_file: Path, out: Path) -> Path:
    """The dimers and clusters (more than 9 atoms) of the PBE model's training set, to replay."""
    from ase.io import read, write
    path = out / "replay_pbe_contacts.xyz"
    if not path.exists():
        write(path, [a for a in read(train_file, ":") if len(a) > 9])
    return path


def finetune(model: Path, n: int, way: str, out: Path, replay: Path) -> Path:
    import yaml
    run = out / way.replace(" ", "_").replace("+", "and")
    if not (run / "best.ckpt").exists():
        settings = dict(WAYS[way])
        training = {"force_weight": 0.0, "threads": 1}
        if "replay_file" in settings:  # CCSD(T) energies and the replayed PBE forces
            settings["replay_file"], training["force_weight"] = str(replay), 4.0
        config = {"output_dir": str(run), "data": {"train_file": str(CCSDT), "train_index": f"0:{n}"},
                  "training": training, "finetune": settings}
        path = out / f"{run.name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        subprocess.run([str(Path(sys.executable).parent / "gmnn-finetune"), str(path), "--from", str(model),
                        "--no-progress", "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    return run / "best.ckpt"


def errors(model, contacts, heldout_pairs) -> dict:
    """CCSD(T) monomer errors, PBE errors on `contacts`, and the interaction errors on the
    held-out clusters and dimers whose labels are there (heldout.py), against PBE."""
    import heldout
    from gmnn.data import read_structures
    from gmnn.units import ENERGY_UNITS
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs

    def run(structures):
        return predict_graphs(model, build_graphs(structures, model.atomic_numbers, model.cutoff))
    e = run(read_structures(CCSDT, index="50:"))
    f = run(read_structures(CCSDT_FORCES))
    c = run(read_structures(contacts))
    contact = c.n_atoms > 9
    atom_contact = np.repeat(contact, c.n_atoms)
    de = (c.energy - c.energy_ref)[contact] / c.n_atoms[contact]
    de = de - np.mean(de)  # the levels' offset is per atom (dimers and clusters have 2 and 3 molecules)
    kcal = 1 / ENERGY_UNITS["kcal/mol"]
    interaction = heldout.errors(model, heldout_pairs)["all"] if heldout_pairs else {}
    return {"heldout_n": interaction.get("n", 0),
            "heldout_interaction_energy_mae_meV": interaction.get("interaction_energy_mae_meV", float("nan")),
            "heldout_interaction_forces_mae_meV_A": interaction.get("interaction_forces_mae_meV_A", float("nan")),"ccsdt_energy_mae_kcal_mol": kcal * float(np.mean(np.abs(e.energy - e.energy_ref))),
            "ccsdt_forces_mae_kcal_mol_A": kcal * float(np.nanmean(np.abs(f.forces - f.forces_ref))),
            "pbe_contacts_n": int(contact.sum()),
            "pbe_contacts_forces_mae_meV_A": 1000 * float(np.mean(np.abs(c.forces - c.forces_ref)[atom_contact])),
            "pbe_contacts_energy_mae_meV_atom_offset_removed": 1000 * float(np.mean(np.abs(de)))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the cluster-aware PBE checkpoint")
    p.add_argument("--contacts", required=True, help="PBE-labelled structures with dimers/clusters (e.g. valid.xyz)")
    p.add_argument("--replay", required=True, help="the PBE model's training structures (train.xyz): its dimers "
                                                  "and clusters are replayed")
    p.add_argument("--n", type=int, default=25, help="CCSD(T) energies to fine-tune on (frames 0..n-1)")
    p.add_argument("--out", default=str(ROOT / "runs" / "liquid_ccsdt"))
    p.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS), help="which fine-tunes (default: all)")
    p.add_argument("--gcp", help="the PBE model learned PBE + gCP (train_liquid.py --gcp NAME): held-out "
                                 "interactions are compared with PBE + gCP")
    args = p.parse_args(argv)
    from gmnn.loading import load
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    zero_shot = out / "zero_shot"
    if not (zero_shot / "best.ckpt").exists():
        import yaml
        cfg = out / "zero_shot.yaml"
        cfg.write_text(yaml.safe_dump({"output_dir": str(zero_shot), "data": {"train_file": str(CCSDT),
                                       "train_index": f"0:{args.n}"}, "training": {"force_weight": 0.0}}))
        subprocess.run([str(Path(sys.executable).parent / "gmnn-finetune"), str(cfg), "--from", args.model,
                        "--zero-shot", "--no-progress", "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    import heldout
    pairs = heldout.test_set(args.gcp)
    rows = {"PBE model as is": errors(load(args.model), args.contacts, pairs),
            "zero-shot (shifts re-fitted)": errors(load(zero_shot / "best.ckpt"), args.contacts, pairs)}
    replay = replay_contacts(Path(args.replay), out)
    for way in args.ways:
        rows[f"fine-tuned: {way}"] = errors(load(finetune(Path(args.model).resolve(), args.n, way, out, replay)),
                                            args.contacts, pairs)
    (out / "finetune_ccsdt.json").write_text(json.dumps({"n_ccsdt": args.n, "model": args.model, "gcp": args.gcp,
                                                          "contacts": args.contacts, "rows": rows}, indent=2))
    lines = [f"N = {args.n} CCSD(T) energies. | model | CCSD(T) E MAE (kcal/mol) | CCSD(T) F MAE (kcal/mol/Å) | "
             "PBE contacts F MAE (meV/Å) | PBE contacts E MAE, offset removed (meV/atom) | "
             "held-out interaction F MAE (meV/Å) | held-out interaction E MAE (meV) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines[0] = lines[0].split(". ", 1)[1]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ccsdt_energy_mae_kcal_mol']:.3f} | {r['ccsdt_forces_mae_kcal_mol_A']:.2f} | "
                     f"{r['pbe_contacts_forces_mae_meV_A']:.1f} | {r['pbe_contacts_energy_mae_meV_atom_offset_removed']:.2f} | "
                     f"{r['heldout_interaction_forces_mae_meV_A']:.1f} | {r['heldout_interaction_energy_mae_meV']:.1f} |")
    (out / "finetune_ccsdt.md").write_text(f"N = {args.n} CCSD(T) energies, {rows['PBE model as is']['pbe_contacts_n']} "
                                           f"PBE contact structures, {rows['PBE model as is']['heldout_n']} held-out structures with interaction "
                                           f"labels.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
