"""Accuracy against speed: test errors of several model sizes next to their LAMMPS cost, so users
can pick a size (issue 16, item 3).

    python benchmarks/accuracy_speed.py                 # train what is missing, evaluate, time, plot
    python benchmarks/accuracy_speed.py --train-only    # train (resumable; run it niced in the background)
    python benchmarks/accuracy_speed.py --datasets carbon --variants 64-64 512-512

Variants, one setting changed at a time around the default (512-512, n_radial 5, r_c 5 Å):
network 64-64, 128-128, 256-256, 512-512; n_radial 3 and 7; cutoff 4 and 6 Å.

Data sets (everything in the repository, labels never seen in training are the test set):
- ethanol: train on 600 (frames 0-599), validate on 100 (900-999) of the 1000 PBE/def2-SVP frames of 300-1000 K xTB MD
  (examples/transfer_learning/data, labelled by gmnn-label); test on the 100 rMD17 frames
  (data/rmd17_ethanol_100.xyz: PBE/def2-SVP by ORCA, 500 K MD geometries). The two codes' energies
  differ by a near-constant offset, so the energy MAE is taken after removing the mean error; the
  force MAE needs no such step.
- carbon: the 100 GAP carbon cells (4-atom distorted graphite, LDA): train 0-79, validate 80-89,
  test 90-99. Ten test cells: read its errors as rough.

Speed: each model exported in float32 and run by `pair_style gmnn` (1 rank, 1 thread, NVE, as
benchmarks/lammps_md.py), on a liquid-ethanol box (~1000 atoms, 0.789 g/cm³) for the ethanol
models and a 1000-atom diamond box for the carbon models, with C_SNAP_2021 on the same diamond box
and a 2048² float32 matmul in the same run as yardsticks. All timings come from one run, model
after model, so ratios between them hold on the loaded 2-core host.

Training runs under runs/accuracy_speed/<dataset>/<variant>/ (git-ignored) and resumes; the
results go to benchmarks/results/accuracy_speed.{json,md,png}.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples" / "lammps"))  # build_ethanol_box, for lammps_md's ethanol box
import lammps_md  # noqa: E402

RUNS = ROOT / "runs" / "accuracy_speed"
DEFAULT = "512-512"
# name: (hidden layers, n_radial, cutoff Å)
VARIANTS = {
    "64-64": ([64, 64], 5, 5.0),
    "128-128": ([128, 128], 5, 5.0),
    "256-256": ([256, 256], 5, 5.0),
    "512-512": ([512, 512], 5, 5.0),
    "n_radial 3": ([512, 512], 3, 5.0),
    "n_radial 7": ([512, 512], 7, 5.0),
    "cutoff 4": ([512, 512], 5, 4.0),
    "cutoff 6": ([512, 512], 5, 6.0),
}
ETHANOL_PBE = "examples/transfer_learning/data/ethanol_xtb_md_300-1000K_pbe_def2svp.xyz"
DATASETS = {
    "ethanol": {
        "data": {"train_file": ETHANOL_PBE, "train_index": "0:600", "valid_file": ETHANOL_PBE,
                 "valid_index": "900:1000", "energy_unit": "eV"},
        "training": {"epochs": 100, "batch_size": 32},
        "test": {"file": "data/rmd17_ethanol_100.xyz", "index": ":", "energy_unit": "kcal/mol",
                 "remove_mean_energy_error": True},
        "box": "ethanol",
    },
    "carbon": {
        "data": {"train_file": "data/carbon_gap_100.xyz", "train_index": "0:80",
                 "valid_file": "data/carbon_gap_100.xyz", "valid_index": "80:90",
                 "energy_key": "energy", "forces_key": "force", "energy_unit": "eV"},
        "training": {"epochs": 400, "batch_size": 8},
        "test": {"file": "data/carbon_gap_100.xyz", "index": "90:", "energy_unit": "eV",
                 "energy_key": "energy", "forces_key": "force", "remove_mean_energy_error": False},
        "box": "diamond",
    },
}
BOX_ATOMS = 1000
STEPS, WARMUP = 40, 2


def slug(variant: str) -> str:
    return variant.replace(" ", "_")


def run_dir(dataset: str, variant: str) -> Path:
    return RUNS / dataset / slug(variant)


# ---- training --------------------------------------------------------------------------------

def write_config(dataset: str, variant: str) -> Path:
    import yaml
    hidden, n_radial, cutoff = VARIANTS[variant]
    spec = DATASETS[dataset]
    config = {
        "output_dir": str(run_dir(dataset, variant)),
        "data": spec["data"],
        "model": {"cutoff": cutoff, "n_radial": n_radial, "hidden": hidden, "dtype": "float32"},
        "training": {"lr": 0.01, "lr_final_factor": 0.01, "energy_weight": 1.0, "force_weight": 4.0,
                     "seed": 0, "threads": 1, **spec["training"]},
    }
    path = RUNS / dataset / f"{slug(variant)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(dataset: str, variant: str) -> None:
    """gmnn-train, resumed if it was interrupted; nothing if the run finished."""
    out = run_dir(dataset, variant)
    if (out / "final_metrics.json").exists():
        return
    config = write_config(dataset, variant)
    command = [str(Path(sys.executable).parent / "gmnn-train"), str(config), "--no-progress"]
    if (out / "last.ckpt").exists():
        command.append("--resume")
    started = time.time()
    print(f"# training {dataset} {variant} ...", flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  done in {time.time() - started:.0f} s", flush=True)


# ---- accuracy --------------------------------------------------------------------------------

def test_errors(dataset: str, variant: str) -> dict:
    """Energy (per structure and per atom) and force MAE of best.ckpt on the test set, in meV."""
    from gmnn.data import read_structures
    from gmnn.descriptor import n_features
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    from gmnn.loading import load
    spec = DATASETS[dataset]["test"]
    model = load(run_dir(dataset, variant) / "best.ckpt")
    keys = {k: spec[k] for k in ("energy_key", "forces_key") if k in spec}
    structures = read_structures(ROOT / spec["file"], energy_unit=spec["energy_unit"], index=spec["index"], **keys)
    p = predict_graphs(model, build_graphs(structures, model.atomic_numbers, model.cutoff))
    error = p.energy - p.energy_ref
    offset = float(np.mean(error)) if spec["remove_mean_energy_error"] else 0.0
    error = error - offset
    return {"n_test": len(structures), "energy_mae_meV": 1000 * float(np.mean(np.abs(error))),
            "energy_per_atom_mae_meV": 1000 * float(np.mean(np.abs(error / p.n_atoms))),
            "forces_mae_meV_A": 1000 * float(np.nanmean(np.abs(p.forces - p.forces_ref))),
            "energy_offset_removed_meV": 1000 * offset,
            "parameters": int(sum(q.numel() for q in model.parameters())),
            "features": n_features(VARIANTS[variant][1])}


def training_summary(dataset: str, variant: str) -> dict:
    out = run_dir(dataset, variant)
    final = json.loads((out / "final_metrics.json").read_text())
    valid = final.get("valid", {})
    return {"valid_energy_per_atom_mae_meV": 1000 * valid.get("energy_per_atom_mae", float("nan")),
            "valid_forces_mae_meV_A": 1000 * valid.get("forces_mae", float("nan"))}


# ---- speed -----------------------------------------------------------------------------------

def timings(datasets, variants, workdir: Path, snap: bool, repeats: int) -> dict:
    """µs/atom/step of every exported model (float32, 1 rank, 1 thread), SNAP and the matmul peak,
    all in this one run: `repeats` rounds over every model (and SNAP), the median kept, so that a
    slow minute of the shared host does not pick one model."""
    import torch
    torch.set_num_threads(1)  # the matmul peak of one core, as the models run in LAMMPS
    lmp, mpirun = lammps_md.lammps_executables()
    rounds = [_timing_round(datasets, variants, workdir, snap, lmp, mpirun) for _ in range(repeats)]
    result = {"rounds": rounds, "models": {}}
    for key in rounds[0]["models"]:
        times = [r["models"][key]["us_per_atom_step"] for r in rounds]
        result["models"][key] = {**rounds[0]["models"][key], "us_per_atom_step": float(np.median(times)),
                                 "us_per_atom_step_rounds": times}
    for key in ("matmul_2048_float32_gflops", "snap_diamond_us_per_atom_step"):
        if key in rounds[0]:
            result[key] = float(np.median([r[key] for r in rounds]))
    return result


def _timing_round(datasets, variants, workdir: Path, snap: bool, lmp: str, mpirun: str) -> dict:
    import gmnn
    import torch
    from train_throughput import peak_matmul_gflops
    result = {"matmul_2048_float32_gflops": peak_matmul_gflops(torch.float32, repeats=5), "models": {}}
    boxes = {}
    for dataset in datasets:
        box = DATASETS[dataset]["box"]
        if box not in boxes:
            boxes[box] = lammps_md.build_system(box, BOX_ATOMS, workdir)
        data, elements, temperature, _ = boxes[box]
        for variant in variants:
            exported = workdir / f"{dataset}_{slug(variant)}_f32.pt"
            if not exported.exists():
                gmnn.export_model(run_dir(dataset, variant) / "best.ckpt", exported, dtype="float32")
            pair = lammps_md.gmnn_pair(str(exported), elements, "")
            r = lammps_md.run_case(lmp, mpirun, data, pair, temperature, 1, 1, STEPS, WARMUP, workdir, 1800.0)
            result["models"][f"{dataset}/{variant}"] = {"us_per_atom_step": r["us_per_atom_step"],
                                                       "atoms": r["atoms"], "box": box}
            print(f"  {dataset} {variant}: {r['us_per_atom_step']:.1f} µs/atom/step", flush=True)
    if snap and "diamond" in boxes:
        files = lammps_md.snap_files()
        if files is not None:
            data, _, temperature, _ = boxes["diamond"]
            r = lammps_md.run_case(lmp, mpirun, data, lammps_md.snap_pair(*files), temperature, 1, 1, STEPS,
                                   WARMUP, workdir, 1800.0)
            result["snap_diamond_us_per_atom_step"] = r["us_per_atom_step"]
            print(f"  SNAP (diamond): {r['us_per_atom_step']:.1f} µs/atom/step", flush=True)
    return result


# ---- report ----------------------------------------------------------------------------------

def markdown(payload) -> str:
    lines = [f"Medians of {len(payload['speed']['rounds'])} timing rounds. "
             f"2048² float32 matmul in the same run: {payload['speed']['matmul_2048_float32_gflops']:.0f} GFLOP/s; "
             f"SNAP (C_SNAP_2021, diamond, 1 rank): "
             f"{payload['speed'].get('snap_diamond_us_per_atom_step', float('nan')):.1f} µs/atom/step.", ""]
    for dataset, rows in payload["results"].items():
        lines += [f"**{dataset}** ({DATASETS[dataset]['box']} box, ~{BOX_ATOMS} atoms, float32, 1 rank, 1 thread)", "",
                  "| model | parameters | µs/atom/step | test E MAE (meV/atom) | test F MAE (meV/Å) "
                  "| valid E MAE (meV/atom) | valid F MAE (meV/Å) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for variant, r in rows.items():
            name = f"**{variant} (default)**" if variant == DEFAULT else variant
            lines.append(f"| {name} | {r['parameters']:,} | {r['us_per_atom_step']:.1f} | "
                         f"{r['energy_per_atom_mae_meV']:.2f} | {r['forces_mae_meV_A']:.1f} | "
                         f"{r['valid_energy_per_atom_mae_meV']:.2f} | {r['valid_forces_mae_meV_A']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(payload, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(payload["results"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = payload["results"][dataset]
        for variant, r in rows.items():
            x, y = r["us_per_atom_step"], r["forces_mae_meV_A"]
            ax.plot(x, y, "*" if variant == DEFAULT else "o", ms=14 if variant == DEFAULT else 7,
                    color="C3" if variant == DEFAULT else "C0")
            ax.annotate(variant, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        snap = payload["speed"].get("snap_diamond_us_per_atom_step")
        if snap and DATASETS[dataset]["box"] == "diamond":
            ax.axvline(snap, color="gray", ls="--")
            ax.annotate("C_SNAP_2021", (snap, ax.get_ylim()[1]), textcoords="offset points", xytext=(-70, -12),
                        fontsize=8, color="gray")
        ax.set_xlabel(f"LAMMPS µs/atom/step ({DATASETS[dataset]['box']} box, float32, 1 core)")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--train-only", action="store_true", help="train what is missing and stop")
    p.add_argument("--no-snap", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds over all models (median kept)")
    p.add_argument("--out", default=str(HERE / "results" / "accuracy_speed.json"))
    args = p.parse_args(argv)

    for dataset in args.datasets:
        for variant in args.variants:
            train(dataset, variant)
    if args.train_only:
        return
    import tempfile
    speed = timings(args.datasets, args.variants, Path(tempfile.mkdtemp(prefix="gmnn_accuracy_speed_")),
                    snap=not args.no_snap, repeats=args.repeats)
    results = {}
    for dataset in args.datasets:
        results[dataset] = {}
        for variant in args.variants:
            r = {"hidden": VARIANTS[variant][0], "n_radial": VARIANTS[variant][1], "cutoff": VARIANTS[variant][2]}
            r.update(test_errors(dataset, variant))
            r.update(training_summary(dataset, variant))
            r.update(speed["models"][f"{dataset}/{variant}"])
            results[dataset][variant] = r
    payload = {"machine": lammps_md.machine_info(), "datasets": {k: DATASETS[k] for k in args.datasets},
               "speed": speed, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    text = markdown(payload)
    out.with_suffix(".md").write_text(text)
    plot(payload, out.with_suffix(".png"))
    print()
    print(text)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
