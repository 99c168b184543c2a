"""Active learning where the liquid goes under NPT (issue 15): the cluster-aware PBE model with D3,
in LAMMPS at 298 K and 1 bar, drifted from 0.785 to 1.02 g/cm³ with force uncertainties up to
2 eV/Å, into packings that gmnn-active's fixed-density Langevin MD (active_liquid.py) never
visits. One round: a short NPT study of 27 molecules (liquid_md.py, frames every 20 fs from the
start, so the densification is in them), the per-atom force uncertainty of every frame, the
`--batch` most uncertain frames (at least 5 frames apart), for each the cluster of 3 whole molecules
around its most uncertain atom, labelled at PBE/def2-SVP (gmnn-label, 2 workers) and appended to
data/ethanol_npt_active_clusters_pbe_def2svp.xyz (committed; train_liquid.py trains on it), then
the model re-trained from where it was (warm start) on everything labelled.

    python examples/liquid_ethanol/npt_active.py --model runs/liquid_pbe/run/best.ckpt --round 1
    python examples/liquid_ethanol/npt_active.py --model runs/npt_active/round_1/train/best.ckpt --round 2

Every step of a round resumes (the study, the labels, the training) under <out>/round_<k>/.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LABELS = HERE / "data" / "ethanol_npt_active_clusters_pbe_def2svp.xyz"
KIND = "cluster (active)"


def explore(model: Path, out: Path, ps: float) -> Path:
    """A 27-molecule NPT study with D3 (liquid_md.py), frames every 20 fs from the start."""
    study = out / "study"
    if not (study / "production.restart").exists():
        exported = out / "model.pt"
        subprocess.run([str(Path(sys.executable).parent / "gmnn-export"), str(model), "-o", str(exported),
                        "--dtype", "float32"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, str(HERE / "liquid_md.py"), "--model", str(exported), "--name", out.name,
                        "--out", str(study), "--molecules", "27", "--d3", "--equilibrate-ps", "0.04",
                        "--production-ps", str(ps), "--dump-every", "40"], check=True)
    return study


def pick(model: Path, study: Path, batch: int, gap: int = 5) -> list:
    """The clusters to label: around the most uncertain atom of each of the `batch` frames with the
    largest force uncertainty, at least `gap` frames apart."""
    from ase.io import read
    from gmnn import md_analysis as md
    from gmnn.clusters import cluster_around
    from liquid_md import atom_uncertainties, production_frames
    frames = production_frames(study)
    ids = md.molecule_ids(read(study / "ethanol.data", format="lammps-data", atom_style="atomic"))
    mols = [np.flatnonzero(ids == m) for m in range(ids.max() + 1)]
    sigma = atom_uncertainties(model, frames)
    order = np.argsort([-s.max() for s in sigma])
    chosen = []
    for k in order:
        if all(abs(k - j) >= gap for j in chosen):
            chosen.append(int(k))
        if len(chosen) == batch:
            break
    clusters = []
    for k in chosen:
        atom = int(np.argmax(sigma[k]))
        c = cluster_around(frames[k], mols, atom, 3)
        c.info.update(kind=KIND, frame=k, sigma_F=float(sigma[k][atom]), source=str(study))
        clusters.append(c)
    print(f"# {len(frames)} frames, largest sigma_F {max(s.max() for s in sigma):.2f} eV/Å; picked frames "
          f"{chosen} (sigma_F {', '.join(f'{sigma[k].max():.2f}' for k in chosen)})", flush=True)
    return clusters


def label(geometries: Path, labels: Path) -> None:
    subprocess.run([str(Path(sys.executable).parent / "gmnn-label"), str(geometries), "-o", str(labels),
                    "--level", "pbe/def2-svp", "--workers", "2", "--threads", "1"], check=True)


def append_labels(labels: Path, round_: int) -> int:
    """This round's labels into LABELS (once; a round already there is not added again)."""
    from ase.io import read, write
    old = read(LABELS, ":") if LABELS.exists() else []
    if any(int(a.info.get("round", -1)) == round_ for a in old):
        return len(old)
    new = read(labels, ":")
    for a in new:
        a.info.update(kind=KIND, round=round_)
    write(LABELS, old + new, format="extxyz")
    return len(old) + len(new)


def retrain(model: Path, out: Path, epochs: int) -> Path:
    """Warm start from `model` on train_liquid.py's data set (now with this round's clusters)."""
    import train_liquid
    from gmnn.checkpoint import load_model
    from gmnn.config import Config, DataConfig, TrainingConfig
    from gmnn.training import Trainer
    run = out / "train"
    if (run / "final_metrics.json").exists():
        return run / "best.ckpt"
    if not (out / "train.xyz").exists():
        print(json.dumps(train_liquid.gather(out)), flush=True)
    start = load_model(model)
    start.uncertainty.energy_scale.zero_()  # as gmnn-active: not a prior, rebuilt from the training set
    config = Config(output_dir=str(run),
                    data=DataConfig(train_file=str(out / "train.xyz"), valid_file=str(out / "valid.xyz"), energy_unit="eV"),
                    model=start.options.to_config(),
                    training=TrainingConfig(epochs=epochs, batch_size=32, lr=0.003, lr_final_factor=0.01, energy_weight=1.0,
                                            force_weight=4.0, seed=0, threads=1)).validate()
    trainer = Trainer(config, model=start, show_progress=False)
    if (run / "last.ckpt").exists():
        trainer.resume()
    trainer.run()
    return run / "best.ckpt"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the model to explore with (a calibrated checkpoint)")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--out", default=str(ROOT / "runs" / "npt_active"))
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--ps", type=float, default=2.0, help="NPT length of the exploration")
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args(argv)
    out = Path(args.out).resolve() / f"round_{args.round}"
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model).resolve()
    study = explore(model, out, args.ps)
    geometries = out / "clusters.xyz"
    if not geometries.exists():
        from ase.io import write
        write(geometries, pick(model, study, args.batch), format="extxyz")
    label(geometries, out / "labels_pbe_def2svp.xyz")
    print(f"# {append_labels(out / 'labels_pbe_def2svp.xyz', args.round)} NPT-active clusters in {LABELS.name}", flush=True)
    best = retrain(model, out, args.epochs)
    print(f"# round {args.round}: {best}")


if __name__ == "__main__":
    main()
