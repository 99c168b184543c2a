"""Active learning in the liquid (issue 15): Langevin MD of periodic 27-molecule boxes of ethanol at
0.785 g/cm³ and 298 K with the cluster-aware PBE model (train_liquid.py), stopped where its force
uncertainty passes 1 eV/Å; the picked frames are labelled at PBE/def2-SVP as clusters of 3 whole
molecules around their most uncertain atom (gmnn-active's selection.cluster_molecules), and the
model is re-trained (warm start) on everything so far.

    python examples/liquid_ethanol/active_liquid.py --model runs/liquid_pbe/run/best.ckpt \\
        --data runs/liquid_pbe [--iterations 8]

Resumes like gmnn-active. Every label computed so far is copied to
data/ethanol_active_clusters_pbe_def2svp.xyz (committed), which train_liquid.py trains on.
"""
import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LABELS = HERE / "data" / "ethanol_active_clusters_pbe_def2svp.xyz"


def starts(path: Path) -> None:
    """Two boxes of 27 rigid ethanol molecules, no atoms of different molecules closer than 2.2 Å
    (closer starts were past the threshold at step 0 for the dimer-trained model)."""
    import ase.io
    from gmnn.clusters import liquid_box
    mol = ase.io.read(ROOT / "data" / "rmd17_ethanol_100.xyz", index=0)
    mol.pbc, mol.cell = False, None
    ase.io.write(path, [liquid_box(mol, 27, 0.785, seed=s, min_distance=2.2) for s in (1, 2)])


def config(out: Path, model: str, data: Path, iterations: int) -> Path:
    import yaml
    values = {
        "output_dir": str(out), "model": model, "level": "pbe/def2-svp", "label_workers": 2,
        "retrain": "warm_start", "max_iterations": iterations, "seed": 0,
        "data": {"train_file": str(data / "train.xyz"), "valid_file": str(data / "valid.xyz"), "energy_unit": "eV"},
        "md": {"start": str(out.parent / f"{out.name}_starts.xyz"), "temperature": 298, "timestep_fs": 0.5,
               "friction_per_fs": 0.01, "steps": 4000, "sample_every": 20, "frames_before_stop": 10,
               "trajectories": 2, "threshold": 1.0},
        "selection": {"batch": 8, "cluster_molecules": 3, "cluster_cutoff": 5.0},
        "training": {"epochs": 60, "batch_size": 32, "lr": 0.003, "lr_final_factor": 0.01, "energy_weight": 1.0,
                     "force_weight": 4.0, "threads": 1},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def collect(out: Path) -> int:
    """Every iteration's labels added to LABELS, which keeps what it holds (the committed clusters
    of earlier runs, whatever --out they used): a geometry already there is not added twice. The
    count in LABELS."""
    import ase.io
    from gmnn.label_file import geometry_key
    from train_liquid import labelled
    frames = ase.io.read(LABELS, ":") if labelled(LABELS) else []
    seen = {geometry_key(a.numbers, a.positions) for a in frames}
    added = 0
    for labels in sorted(out.glob("iter_*/labels.xyz"), key=lambda p: int(p.parent.name.split("_")[1])):
        if not labelled(labels):
            continue
        iteration = int(labels.parent.name.split("_")[1])
        for a in ase.io.read(labels, ":"):
            key = geometry_key(a.numbers, a.positions)
            if key in seen:
                continue
            seen.add(key)
            a.info.update(kind="cluster (active)", iteration=iteration)
            frames.append(a)
            added += 1
    if added:
        ase.io.write(LABELS, frames, format="extxyz")
    return len(frames)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the cluster-aware PBE checkpoint (calibrated)")
    p.add_argument("--data", required=True, help="its train_liquid.py directory (train.xyz, valid.xyz)")
    p.add_argument("--out", default=str(ROOT / "runs" / "liquid_active"))
    p.add_argument("--iterations", type=int, default=8)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out.parent / f"{out.name}_starts.xyz").exists():
        starts(out.parent / f"{out.name}_starts.xyz")
    command = [str(Path(sys.executable).parent / "gmnn-active"),
               str(config(out, str(Path(args.model).resolve()), Path(args.data).resolve(), args.iterations))]
    if (out / "state.json").exists():
        command.append("--resume")
    status = subprocess.run(command).returncode
    print(f"{LABELS.name}: {collect(out)} labelled clusters")
    return status


if __name__ == "__main__":
    sys.exit(main())
