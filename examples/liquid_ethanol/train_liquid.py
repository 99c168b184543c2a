"""Train the cluster-aware PBE/def2-SVP ethanol model (issue 15): the monomer frames of the
monomer-only model plus every dimer and cluster labelled so far, then measure it, next to the
monomer-only model, on each kind of structure.

    python examples/liquid_ethanol/train_liquid.py                   # train (resumes) and evaluate
    python examples/liquid_ethanol/train_liquid.py --evaluate-only   # the table only

Data (all PBE/def2-SVP by gmnn-label, energies in eV):
- monomers: the 1300 frames of the shipped model ethanol-pbe-def2svp
  (examples/transfer_learning/data: 1000 frames of 300-1000 K xTB MD, 300 of 500 K);
- dimers and clusters: data/ethanol_{dimers,clusters}_pbe_def2svp.xyz (make_data.py; labelling
  runs in the background and resumes, this script takes what is there), and the clusters active
  learning cut from the liquid, data/ethanol_active_clusters_pbe_def2svp.xyz (active_liquid.py).
Every 10th structure of each file validates (chooses the best epoch); the held-out set
(data/ethanol_liquid_heldout_pbe_def2svp.xyz: clusters and dimers of another droplet run at
another temperature) is only measured. The model has the shipped model's architecture (r_c 5 Å,
256-256) and is trained from scratch; D3(BJ) is added at run time, never learned.

Writes <out>/train.xyz, valid.xyz, train.yaml, the run (best.ckpt, ...) and <out>/errors.json/.md:
energy per atom and force MAE by kind (monomer, dimer kinds, cluster) for this model and the
monomer-only model.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from gmnn.gcp import PARAMETERS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MONOMERS = [ROOT / "examples" / "transfer_learning" / "data" / name
            for name in ("ethanol_xtb_md_300-1000K_pbe_def2svp.xyz", "ethanol_md500K_pbe_def2svp.xyz")]
CONTACTS = [HERE / "data" / "ethanol_dimers_pbe_def2svp.xyz", HERE / "data" / "ethanol_clusters_pbe_def2svp.xyz",
            HERE / "data" / "ethanol_active_clusters_pbe_def2svp.xyz",       # active_liquid.py
            HERE / "data" / "ethanol_npt_active_clusters_pbe_def2svp.xyz"]   # npt_active.py
HELDOUT = HERE / "data" / "ethanol_liquid_heldout_pbe_def2svp.xyz"
MONOMER_MODEL = "ethanol-pbe-def2svp"


def kind(atoms) -> str:
    """monomer, cluster, or the dimer's kind (hbond, contact, scan) as make_data.py wrote it."""
    if len(atoms) == 9:
        return "monomer"
    if len(atoms) > 18:  # droplet clusters (make_data.py) or those active learning cut from the liquid
        return "cluster (active)" if atoms.info.get("kind") == "cluster (active)" else "cluster"
    label = str(atoms.info.get("kind", "?"))
    return label if label.startswith("dimer") else f"dimer ({label})"


def labelled(path: Path) -> bool:
    """The label file has at least one structure (gmnn-label creates it empty when it starts)."""
    return path.exists() and path.stat().st_size > 0


def read_labelled(path: Path):
    """A label file's frames with the metadata of the geometries they were computed for (files
    labelled before gmnn-label kept it lack kind=; the source file, same name without the level
    suffix, has it under the frame's source_index)."""
    from ase.io import read
    frames = read(path, ":")
    source = path.with_name(path.name.replace("_pbe_def2svp", ""))
    if source != path and source.exists() and any("kind" not in a.info for a in frames):
        originals = read(source, ":")
        for a in frames:
            a.info = {**originals[int(a.info["source_index"])].info, **a.info}
    return frames


def read_labels(path: Path, gcp: Optional[str] = None):
    """read_labelled, with gCP added to every label when `gcp` names its parameters."""
    from gmnn.gcp import corrected
    frames = read_labelled(path)
    return [corrected(a, gcp) for a in frames] if gcp else frames


def gather(out: Path, gcp: Optional[str] = None) -> dict:
    """train.xyz and valid.xyz (every 10th structure of each file) with each structure's kind;
    with `gcp`, the labels are PBE + gCP (gmnn.gcp: the basis set superposition error of
    def2-SVP taken out, so the model learns counterpoise-corrected PBE)."""
    from ase.io import write
    train, valid, counts = [], [], {}
    for path in MONOMERS + CONTACTS:
        if not labelled(path):
            continue
        frames = read_labels(path, gcp)
        for k, atoms in enumerate(frames):
            atoms.info["kind"] = kind(atoms)
            (valid if k % 10 == 9 else train).append(atoms)
        counts[path.name] = len(frames)
    write(out / "train.xyz", train)
    write(out / "valid.xyz", valid)
    return {"files": counts, "train": len(train), "valid": len(valid), "gcp": gcp}


def write_config(out: Path, epochs: int) -> Path:
    import yaml
    config = {
        "output_dir": str(out / "run"),
        "data": {"train_file": str(out / "train.xyz"), "valid_file": str(out / "valid.xyz"), "energy_unit": "eV"},
        "model": {"cutoff": 5.0, "n_radial": 5, "hidden": [256, 256], "dtype": "float32"},
        "training": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "lr_final_factor": 0.01,
                     "energy_weight": 1.0, "force_weight": 4.0, "seed": 0, "threads": 1},
    }
    path = out / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def errors_by_kind(model, frames) -> dict:
    """{kind: {n, energy per atom MAE meV, force MAE meV/Å}} of `model` on labelled ASE frames."""
    from gmnn.data import Structure
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    structures = [Structure.from_atoms(a, energy=a.get_potential_energy(), forces=a.get_forces()) for a in frames]
    p = predict_graphs(model, build_graphs(structures, model.atomic_numbers, model.cutoff))
    de = (p.energy - p.energy_ref) / p.n_atoms
    atom_kind = np.repeat([kind(a) for a in frames], p.n_atoms)
    kinds = np.array([kind(a) for a in frames])
    table = {}
    for k in sorted(set(kinds)):
        table[k] = {"n": int(np.sum(kinds == k)), "energy_per_atom_mae_meV": 1000 * float(np.mean(np.abs(de[kinds == k]))),
                    "forces_mae_meV_A": 1000 * float(np.mean(np.abs(p.forces - p.forces_ref)[atom_kind == k]))}
    return table


def evaluate(out: Path, gcp: Optional[str] = None) -> dict:
    """Errors against the labels the model was trained on (PBE, or PBE + gCP with `gcp`)."""
    from ase.io import read
    from gmnn.loading import load
    sets = {"validation": read(out / "valid.xyz", ":")}
    if labelled(HELDOUT):
        sets["held-out"] = read_labels(HELDOUT, gcp)
    models = {"monomer-only (ethanol-pbe-def2svp)": load(MONOMER_MODEL), "cluster-aware": load(out / "run" / "best.ckpt")}
    result = {name: {s: errors_by_kind(m, frames) for s, frames in sets.items()} for name, m in models.items()}
    (out / "errors.json").write_text(json.dumps(result, indent=2))
    lines = ["| model | set | kind | n | E MAE (meV/atom) | F MAE (meV/Å) |", "|---|---|---|---:|---:|---:|"]
    for name, by_set in result.items():
        for s, by_kind in by_set.items():
            for k, r in by_kind.items():
                lines.append(f"| {name} | {s} | {k} | {r['n']} | {r['energy_per_atom_mae_meV']:.2f} | "
                             f"{r['forces_mae_meV_A']:.1f} |")
    (out / "errors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "liquid_pbe"))
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--evaluate-only", action="store_true")
    p.add_argument("--gcp", choices=sorted(PARAMETERS),
                   help="add gCP to every label (the def2-SVP basis set superposition error taken out)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.evaluate_only and not (out / "run" / "final_metrics.json").exists():
        if not (out / "run" / "last.ckpt").exists():
            print(json.dumps(gather(out, args.gcp)))
        command = [str(Path(sys.executable).parent / "gmnn-train"), str(write_config(out, args.epochs)), "--no-progress"]
        if (out / "run" / "last.ckpt").exists():
            command.append("--resume")
        subprocess.run(command, check=True)
    evaluate(out, args.gcp)


if __name__ == "__main__":
    main()
