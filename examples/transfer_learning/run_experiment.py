"""Transfer learning experiment (issue 4, GMNN_SPEC section 2) for ethanol.

1. Pre-train GM-NN on PBE/def2-SVP energies and forces.
2. For N CCSD(T)/cc-pVDZ structures: fine-tune as gmnn-finetune does with its defaults (energies
   only; and with forces where CCSD(T) forces exist), train the same model from scratch on the
   same N, and write the zero-shot baseline (gmnn-finetune --zero-shot: the pre-trained model
   with only its energy shifts re-fitted).
3. Test on held-out CCSD(T) energies (and CCSD(T) forces of a few structures).
Writes results.json, learning_curve.png into --out (default runs/transfer_learning).
Finished runs are reused (delete their folder to redo them).

    python examples/transfer_learning/run_experiment.py [--quick]
    python examples/transfer_learning/run_experiment.py --pretrained organic-gfn2xtb --sizes 10,25,50 --no-scratch \
        --out runs/tl_organic     # step 2-3 from another model (a checkpoint or a shipped name)
"""
import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from gmnn.checkpoint import load_model
from gmnn.config import config_from_dict
from gmnn.data import read_structures, write_structures
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.finetuning import finetune
from gmnn.graph import build_graphs
from gmnn.pretrained import resolve_model_source
from gmnn.training import Trainer
from gmnn.units import ENERGY_UNITS

HERE = Path(__file__).resolve().parent
KCAL = 1 / ENERGY_UNITS["kcal/mol"]  # kcal/mol per eV


def run_config(out, train_file, train_index, valid_file, valid_index, model, training, force_weight):
    return config_from_dict({
        "output_dir": str(out),
        "data": {"train_file": str(train_file), "train_index": train_index,
                 "valid_file": str(valid_file), "valid_index": valid_index},
        "model": model,
        "training": {**training, "force_weight": force_weight},
    })


def finetune_config(out, train_file, train_index, settings, force_weight):
    """gmnn-finetune's config: the data and the label kind; everything else its defaults
    (config.FINETUNE_TRAINING_DEFAULTS), unless experiment.yaml's finetune_training or finetune
    sections say more."""
    return config_from_dict({"output_dir": str(out),
                             "data": {"train_file": str(train_file), "train_index": train_index},
                             "training": {"force_weight": force_weight, "threads": 1, **settings["training"]},
                             "finetune": dict(settings["finetune"])})


def pretraining_file(files, out):
    """The PBE pre-training structures: one file as it is; several (experiment.yaml gives a
    list) joined and shuffled (seeded) into <out>/pretrain_data.xyz, so the 90/10 split is random."""
    if isinstance(files, str):
        return HERE / files
    structures = [s for f in files for s in read_structures(HERE / f)]
    order = np.random.default_rng(0).permutation(len(structures))
    path = out / "pretrain_data.xyz"
    if not path.exists():
        write_structures([structures[k] for k in order], path)
    return path


def trained(config, make_trainer):
    """Train (unless done) and load the best checkpoint, selected on the run's own validation
    frames (never on the test set)."""
    path = Path(config.output_dir) / "best.ckpt"
    if not (Path(config.output_dir) / "final_metrics.json").exists():
        make_trainer(config).run()
    return load_model(path)


def test_errors(model, test_graphs, force_graphs):
    e = error_metrics(predict_graphs(model, test_graphs, forces=False))
    out = {"energy_mae_kcal": KCAL * e["energy_mae"], "energy_rmse_kcal": KCAL * e["energy_rmse"]}
    if force_graphs:
        f = error_metrics(predict_graphs(model, force_graphs))
        out["forces_mae_kcal"] = KCAL * f["forces_mae"]
        out["n_force_structures"] = len(force_graphs)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "experiment.yaml"))
    p.add_argument("--out", default="runs/transfer_learning")
    p.add_argument("--quick", action="store_true", help="few epochs, to check the pipeline")
    p.add_argument("--pretrained", default=None,
                   help="start from this model (checkpoint or shipped name) instead of pre-training on PBE")
    p.add_argument("--sizes", default=None, help="comma-separated N (default: experiment.yaml's sizes)")
    p.add_argument("--no-scratch", action="store_true", help="leave out the from-scratch runs")
    args = p.parse_args()
    cfg = yaml.safe_load(open(args.config))
    data = lambda key: HERE / cfg[key]
    out = Path(args.out)
    pre_training, small_training = dict(cfg["pretrain_training"]), dict(cfg["scratch_training"])
    ft_settings = {"training": dict(cfg.get("finetune_training") or {}), "finetune": dict(cfg.get("finetune") or {})}
    if args.quick:
        pre_training["epochs"], small_training["epochs"], ft_settings["training"]["epochs"] = 5, 5, 5

    out.mkdir(parents=True, exist_ok=True)
    if args.pretrained:  # another starting point, e.g. a shipped organic model
        pretrained_path = resolve_model_source(args.pretrained)
        pretrained, n_pbe = load_model(pretrained_path), None
    else:  # 1. pre-train on PBE (90 % train, 10 % validation, at random)
        pbe_file = pretraining_file(cfg["pretrain_data"], out)
        n_pbe = len(read_structures(pbe_file))
        n_val = max(1, n_pbe // 10)
        pre_cfg = run_config(out / "pretrain", pbe_file, f"0:{n_pbe - n_val}", pbe_file,
                             f"{n_pbe - n_val}:", cfg["model"], pre_training, pre_training.get("force_weight", 4.0))
        pretrained = trained(pre_cfg, lambda c: Trainer(c, show_progress=True))
        pretrained_path = Path(pre_cfg.output_dir) / "best.ckpt"

    elements = pretrained.atomic_numbers
    pool_start, pool_stop = (int(x) for x in cfg["fine_tune_pool"].split(":"))
    test = build_graphs(read_structures(data("ccsdt_energies"), index=cfg["test_frames"]), elements, pretrained.cutoff)
    force_path = data("ccsdt_forces")
    with_forces = read_structures(force_path) if force_path.exists() else []
    test_sources = set(range(*(int(x) for x in cfg["test_frames"].split(":"))))
    ccsdt_all = read_structures(data("ccsdt_energies"))
    # a structure is identified by its geometry: forces labels of test geometries test forces
    test_positions = [s.positions for s in ccsdt_all[slice(*(int(x) for x in cfg["test_frames"].split(":")))]]
    force_test = [s for s in with_forces if any(np.allclose(s.positions, t) for t in test_positions)]
    force_train = [s for s in with_forces if not any(np.allclose(s.positions, t) for t in test_positions)]
    force_graphs = build_graphs(force_test, elements, pretrained.cutoff)

    results = {"pretrained_on_ccsdt": test_errors(pretrained, test, force_graphs), "runs": [],
               "test_structures": len(test), "pretraining_structures": n_pbe,
               "pretrained": str(args.pretrained or pretrained_path)}
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else cfg["sizes"]
    sizes = [n for n in sizes if pool_start + n <= pool_stop]
    rows = {n: {"n": n} for n in sizes}

    def finetuned(n, kind, train_file, first, force_weight):
        """Fine-tuned as gmnn-finetune does with its defaults (the soup of 5 fold models)."""
        ft_cfg = finetune_config(out / f"n{n}" / f"finetune_{kind}", train_file, f"{first}:{first + n}",
                                 ft_settings, force_weight)
        if not (Path(ft_cfg.output_dir) / "final_metrics.json").exists():
            finetune(ft_cfg, pretrained_path, show_progress=False, overwrite=True)
        return test_errors(load_model(Path(ft_cfg.output_dir) / "best.ckpt"), test, force_graphs)

    def scratch(n, kind, train_file, first, force_weight):
        """Trained from scratch (3x the lr) as gmnn-train does: 20 % of the N validate, best epoch."""
        n_valid = max(2, n // 5)
        config = run_config(out / f"n{n}" / f"scratch_{kind}", train_file, f"{first}:{first + n - n_valid}",
                            train_file, f"{first + n - n_valid}:{first + n}", cfg["model"],
                            {**small_training, "lr": 3 * small_training["lr"]}, force_weight)
        return test_errors(trained(config, lambda c: Trainer(c, show_progress=False)), test, force_graphs)

    def zero_shot(n):
        config = finetune_config(out / f"n{n}" / "zero_shot", data("ccsdt_energies"), f"{pool_start}:{pool_start + n}",
                                 ft_settings, 0.0)
        if not (Path(config.output_dir) / "final_metrics.json").exists():
            finetune(config, pretrained_path, show_progress=False, overwrite=True, zero_shot_only=True)
        return test_errors(load_model(Path(config.output_dir) / "best.ckpt"), test, force_graphs)

    def forces_subset(n):
        """The first n structures with CCSD(T) forces (outside the test set)."""
        subset = out / f"n{n}" / "forces_train.xyz"
        write_structures(force_train[:n], subset)
        return subset

    # every run is a job of its own, cheapest and most telling first; results are written after
    # each, so an interrupted experiment reports what it has (and a re-run skips finished runs)
    energies = data("ccsdt_energies")
    jobs = [(n, "zero_shot", lambda n=n: zero_shot(n)) for n in sizes]
    jobs += [(n, "finetune_energy_only", lambda n=n: finetuned(n, "energy", energies, pool_start, 0.0)) for n in sizes]
    jobs += [(n, "finetune_with_forces", lambda n=n: finetuned(n, "forces", forces_subset(n), 0, 4.0))
             for n in sizes if len(force_train) >= n]
    if not args.no_scratch:
        jobs += [(n, "scratch_energy_only", lambda n=n: scratch(n, "energy", energies, pool_start, 0.0)) for n in sizes]
        jobs += [(n, "scratch_with_forces", lambda n=n: scratch(n, "forces", forces_subset(n), 0, 4.0))
                 for n in sizes if len(force_train) >= n]
    for n, key, job in jobs:
        rows[n][key] = job()
        print(json.dumps({"n": n, key: rows[n][key]}), flush=True)
        results["runs"] = [rows[n] for n in sizes]
        (out / "results.json").write_text(json.dumps(results, indent=2))
        (out / "results.md").write_text(table(results))
        plot(results, out / "learning_curve.png")
    print(table(results))
    print(f"wrote {out / 'results.json'}, results.md and {out / 'learning_curve.png'}")


COLUMNS = [("finetune_energy_only", "fine-tuned, E only"), ("scratch_energy_only", "scratch, E only"),
           ("zero_shot", "zero-shot"), ("finetune_with_forces", "fine-tuned, E+F"),
           ("scratch_with_forces", "scratch, E+F")]


def table(results) -> str:
    """Markdown: CCSD(T) test energy MAE (and force MAE) in kcal/mol(/A) per N and method."""
    used = [(k, name) for k, name in COLUMNS if any(k in r for r in results["runs"])]
    head = "| N | " + " | ".join(name for _, name in used) + " |"
    rows = [head, "|---" * (len(used) + 1) + "|"]
    fmt = lambda d: (f"{d['energy_mae_kcal']:.3f}" + (f" / {d['forces_mae_kcal']:.2f}" if "forces_mae_kcal" in d else ""))
    for r in results["runs"]:
        rows.append(f"| {r['n']} | " + " | ".join(fmt(r[k]) if k in r else "-" for k, _ in used) + " |")
    pre = results["pretrained_on_ccsdt"]
    rows.append("")
    rows.append(f"Energy MAE / force MAE on the CCSD(T) test set ({results['test_structures']} energies"
                + (f", forces of {pre['n_force_structures']} structures" if "n_force_structures" in pre else "")
                + f"), kcal/mol and kcal/mol/Å. The pre-trained model ({results['pretrained']}) as is: {fmt(pre)}.")
    return "\n".join(rows) + "\n"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    styles = {"finetune_energy_only": ("o-", "fine-tuned, energies"), "scratch_energy_only": ("s--", "scratch, energies"),
              "zero_shot": ("^:", "zero-shot (shifts re-fitted)"), "finetune_with_forces": ("D-", "fine-tuned, forces"),
              "scratch_with_forces": ("v--", "scratch, forces")}
    has_forces = any("forces_mae_kcal" in r.get("zero_shot", {}) for r in results["runs"])
    fig, axes = plt.subplots(1, 2 if has_forces else 1, figsize=(10 if has_forces else 5.5, 4.2), squeeze=False)
    for key, (style, label) in styles.items():
        rows = [r for r in results["runs"] if key in r]
        if not rows:
            continue
        n = [r["n"] for r in rows]
        axes[0, 0].loglog(n, [r[key]["energy_mae_kcal"] for r in rows], style, label=label)
        if has_forces:
            axes[0, 1].loglog(n, [r[key]["forces_mae_kcal"] for r in rows], style, label=label)
    axes[0, 0].set_ylabel("CCSD(T) test energy MAE (kcal/mol)")
    if has_forces:
        axes[0, 1].set_ylabel("CCSD(T) test force MAE (kcal/mol/Å)")
    for ax in axes[0]:
        ax.set_xlabel("CCSD(T) training structures N")
        ax.legend(fontsize=8)
    fig.suptitle(f"Ethanol: {results['pretrained']} fine-tuned on CCSD(T)/cc-pVDZ")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
