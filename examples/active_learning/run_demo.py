"""Active learning on a real extension of the domain (issue 14 item 4): from an ethanol model
trained on 300 K frames only to stable 1000 K MD, with gmnn-active choosing what to label,
next to the same label budget drawn at random from the same kind of MD frames.

Level of theory: GFN2-xTB (tblite), for every label here - the starting data, the labels the
loops buy and the test set - so the whole comparison costs minutes; with PBE the commands are
the same with `level: pbe/def2-svp` (each label then costs ~8 s).

1. Label the 1000 committed xTB-MD geometries (300/500/700/1000 K, frame k at temperature
   k mod 4: examples/transfer_learning/data/ethanol_xtb_md_300-1000K.xyz) at GFN2-xTB.
2. Train the starting model on 300 K frames only (gmnn-train; uncertainty calibrated on 300 K
   validation frames).
3. Run gmnn-active twice from it, MD at 1000 K: `selection.method: uncertainty` and `random`,
   same batch, same budget, same seeds.
4. Test both after every iteration on 1000 K frames no loop saw (held out from step 1).
Writes results/active_vs_random.{json,md,png}. Finished steps under --out are reused.

    python examples/active_learning/run_demo.py [--out runs/active_demo]
"""
import argparse
import json
from pathlib import Path

import yaml

from gmnn.active import load_active_config, run_active
from gmnn.config import config_from_dict
from gmnn.data import read_structures, write_structures
from gmnn.labelling import label_structures
from gmnn.levels import Level
from gmnn.training import Trainer

HERE = Path(__file__).resolve().parent
GEOMETRIES = HERE.parent / "transfer_learning" / "data" / "ethanol_xtb_md_300-1000K.xyz"
TEMPERATURES = (300, 500, 700, 1000)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/active_demo")
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--batch", type=int, default=10)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. GFN2-xTB labels of all 1000 geometries (resumable), split by temperature
    import ase.io
    labels = out / "xtb_labels.xyz"
    label_structures(ase.io.read(GEOMETRIES, ":"), labels, Level.parse("gfn2-xtb"), progress=True)
    everything = read_structures(labels)
    by_t = {t: [s for k, s in enumerate(everything) if k % 4 == i] for i, t in enumerate(TEMPERATURES)}
    cold, hot = by_t[300], by_t[1000]
    train300 = write_structures(cold[:200], out / "train_300K.xyz")
    valid300 = write_structures(cold[200:], out / "valid_300K.xyz")
    test1000 = write_structures(hot[100:], out / "test_1000K.xyz")        # 150 frames no loop sees
    start = write_structures(hot[:4], out / "start_1000K.xyz")             # MD starts (unlabelled use only)

    # 2. the starting model: 300 K only
    start_cfg = config_from_dict({
        "output_dir": str(out / "model_300K"),
        "data": {"train_file": str(train300), "valid_file": str(valid300), "test_file": str(test1000)},
        "model": {"hidden": [128, 128], "dtype": "float32", "cutoff": 5.0},
        "training": {"epochs": 300, "batch_size": 16, "lr": 0.01, "force_weight": 4.0, "threads": 1}})
    if not (Path(start_cfg.output_dir) / "final_metrics.json").exists():
        Trainer(start_cfg, show_progress=True).run()
    start_metrics = json.loads((Path(start_cfg.output_dir) / "final_metrics.json").read_text())
    threshold = threshold_of(Path(start_cfg.output_dir) / "best.ckpt", valid300)

    # 3. the two loops
    reports = {}
    for method in ("uncertainty", "random"):
        cfg = {"output_dir": str(out / method), "model": str(Path(start_cfg.output_dir) / "best.ckpt"),
               "level": "gfn2-xtb", "retrain": "warm_start", "max_iterations": args.iterations, "seed": 0,
               "data": {"train_file": str(train300), "valid_file": str(valid300), "test_file": str(test1000)},
               "md": {"start": str(start), "temperature": 1000, "timestep_fs": 0.5, "steps": 4000,
                      "sample_every": 20, "frames_before_stop": 5, "trajectories": 4, "threshold": threshold},
               "selection": {"batch": args.batch, "method": method},
               "training": {"epochs": 100, "batch_size": 16, "lr": 0.003, "force_weight": 4.0, "threads": 1}}
        path = out / f"{method}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        done = (out / method / "report.json").exists()
        reports[method] = run_active(load_active_config(path), resume=done or (out / method).exists(),
                                     progress=True)
    results = {"level": "gfn2-xtb", "start_model": {"training": "200 frames at 300 K (+ 50 validation)",
                                                   "test_1000K": start_metrics.get("test", {})},
               "threshold_eV_per_A": threshold, "loops": {m: json.loads((out / m / "report.json").read_text())
                                                          for m in reports}}
    target = HERE / "results"
    target.mkdir(exist_ok=True)
    (target / "active_vs_random.json").write_text(json.dumps(results, indent=2))
    (target / "active_vs_random.md").write_text(table(results))
    plot(results, target / "active_vs_random.png")
    print(table(results))


def table(results) -> str:
    """Per label count: test errors on the 1000 K frames and MD length reached, both methods."""
    loops = results["loops"]
    by_labels = {m: {row["labels"]: row for row in loops[m]["iterations"]} for m in loops}
    counts = sorted(set(by_labels["uncertainty"]) & set(by_labels["random"]))
    rows = [f"Level GFN2-xTB; MD at 1000 K, 4 trajectories of up to 2 ps per iteration, threshold "
            f"{results['threshold_eV_per_A']} eV/Å (max per-atom sigma_F). Test: 150 frames at 1000 K.", "",
            "| labels | F MAE, uncertainty (meV/Å) | F MAE, random | E MAE, uncertainty (meV/atom) | E MAE, random | "
            "MD reached, uncertainty (mean / min ps) | MD reached, random |", "|---|---|---|---|---|---|---|"]
    for n in counts:
        u, r = by_labels["uncertainty"][n], by_labels["random"][n]
        rows.append(f"| {n} | {1000 * u['test_forces_mae']:.1f} | {1000 * r['test_forces_mae']:.1f} | "
                    f"{1000 * u['test_energy_per_atom_mae']:.2f} | {1000 * r['test_energy_per_atom_mae']:.2f} | "
                    f"{u['md_mean_ps']:.2f} / {u['md_min_ps']:.2f} | {r['md_mean_ps']:.2f} / {r['md_min_ps']:.2f} |")
    return "\n".join(rows) + "\n"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, style in (("uncertainty", "o-"), ("random", "s--")):
        rows = results["loops"][method]["iterations"]
        labels = [r["labels"] for r in rows]
        axes[0].plot(labels, [1000 * r["test_forces_mae"] for r in rows], style, label=f"selection: {method}")
        axes[1].plot(labels, [r["md_mean_ps"] for r in rows], style, label=f"selection: {method}")
    axes[0].set(xlabel="labels added to the 300 K data", ylabel="force MAE at 1000 K (meV/Å)")
    axes[1].set(xlabel="labels added to the 300 K data", ylabel="1000 K MD under the threshold, mean (ps)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def threshold_of(checkpoint, valid_file, factor=2.0):
    """md.threshold: twice the largest per-atom sigma_F of the starting model on its own 300 K
    validation frames (what "inside the domain" looked like), rounded to 0.01 eV/Å."""
    from gmnn.checkpoint import load_model
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    model = load_model(checkpoint)
    graphs = build_graphs(read_structures(valid_file), model.atomic_numbers, model.cutoff)
    largest = float(predict_graphs(model, graphs, uncertainty=True).forces_uncertainty.max())
    return round(factor * largest, 2)

if __name__ == "__main__":
    main()
