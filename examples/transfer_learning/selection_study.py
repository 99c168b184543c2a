"""Which way of choosing a fine-tune survives few labels? (issue 11)

For N CCSD(T) energies of ethanol (rMD17 frames 0..N-1 for seed 0, a random N of frames 0-49
for other seeds) and each training setting, one set of
runs answers every selection method at once, because each run records its curves:
  - split:   fine-tune on 80 % of the N, best epoch on the other 20 % (gmnn's old default)
  - last:    fine-tune on all N for the whole schedule, keep the last epoch
  - cv:      k-fold cross-validation over the N picks the epoch; fit on all N, stop there
  - cv-ens:  the mean of the k fold models at the CV epoch (an ensemble; no refit)
  - cv-soup: one model whose weights are the mean of the k fold models' at the CV epoch
  - soup-last: the same after the last epoch (what gmnn-finetune keeps when fine-tuning helps)
  - zero-shot: pre-trained model, shifts re-fitted on the N (the baseline to beat)
  - oracle:  the all-N run at its best test epoch (not a method: the ceiling)
Test: CCSD(T) energies of frames 50-99 and CCSD(T) forces of frames 50-52; never used to choose.
Epochs are compared at multiples of --every (validation and test are evaluated there).

    python examples/transfer_learning/selection_study.py --pretrained runs/sel/pretrain300/best.ckpt
"""
import argparse
import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np

from gmnn.checkpoint import load_model
from gmnn.config import config_from_dict
from gmnn.data import read_structures
from gmnn.evaluation import predict_graphs
from gmnn.finetuning import finetuner
from gmnn.graph import build_graphs
from gmnn.selection import cross_validate
from gmnn.dataset import PreparedData
from gmnn.units import ENERGY_UNITS

HERE = Path(__file__).resolve().parent
KCAL = 1 / ENERGY_UNITS["kcal/mol"]  # kcal/mol per eV


def ft_config(setting, epochs, out):
    return config_from_dict({
        "output_dir": str(out), "data": {"train_file": "unused"},
        "training": {"epochs": epochs, "batch_size": setting["batch_size"], "lr": setting["lr"], "force_weight": 0.0,
                     "threads": 1, "seed": setting.get("seed", 0)},
        "finetune": {"layer_lr_factor": setting["layer_lr_factor"], "anchor_weight": setting["anchor_weight"],
                     "freeze": setting.get("freeze", [])},
    })


class TestRecorder:
    """Test-set predictions of a trainer's model at the evaluated epochs."""

    def __init__(self, test, force_test):
        self.test, self.force_test = test, force_test
        self.energy_ref = np.array([g.energy for g in test])
        self.forces_ref = np.concatenate([g.forces.numpy() for g in force_test])

    def predict(self, model):
        model.eval()
        e = predict_graphs(model, self.test, forces=False).energy
        f = predict_graphs(model, self.force_test).forces
        return e, f

    def errors(self, e, f):
        return KCAL * float(np.mean(np.abs(e - self.energy_ref))), KCAL * float(np.mean(np.abs(f - self.forces_ref)))


def run_setting(pretrained, pool, rec, setting, epochs, every, folds):
    """Curves of one training setting on the N pool structures."""
    n = len(pool)
    evaluated = list(range(0, epochs + 1, every))
    make = lambda train, valid: finetuner(ft_config(setting, epochs, "/tmp/unused"), copy.deepcopy(pretrained),
                                          show_progress=False,
                                          data=PreparedData(train, valid, [], pretrained.atomic_numbers))
    out = {}
    # k-fold (the fold models side by side): at evaluated epochs the test predictions of each
    # fold model (for their ensemble) and of their weight average (the soup gmnn-finetune keeps)
    fold_e = np.zeros((folds, len(evaluated), len(rec.test)))
    fold_f = np.zeros((folds, len(evaluated)) + rec.forces_ref.shape)
    soup = [None] * len(evaluated)

    def keep(epoch, trainers, metrics, losses):
        if epoch % every == 0:
            for fold, trainer in enumerate(trainers):
                fold_e[fold, epoch // every], fold_f[fold, epoch // every] = rec.predict(trainer.model)
                trainer.model.train()
            soup[epoch // every] = rec.errors(*rec.predict(soup_model(pretrained, [t.model for t in trainers], pool)))
    cv = cross_validate(pool, make, folds, epochs, seed=setting.get("seed", 0), on_epoch=keep)
    cv_curve = cv.curve[evaluated]
    # one run on all N, and the 80/20 split run
    full = curve_run(make(list(pool), []), epochs, every, rec)
    n_valid = max(2, n // 5)
    split = curve_run(make(list(pool[:n - n_valid]), list(pool[n - n_valid:])), epochs, every, rec)
    e_cv = int(np.argmin(cv_curve))
    e_split = int(np.argmin(split["valid_loss"]))
    ens = rec.errors(fold_e[:, e_cv].mean(axis=0), fold_f[:, e_cv].mean(axis=0))
    out["epochs_evaluated"] = evaluated
    out["cv_curve"] = cv_curve.tolist()
    out["full_test"] = full["test"]
    out["split_test"] = split["test"]
    out["split_valid"] = split["valid_loss"]
    out["fold_ensemble_test"] = [rec.errors(fold_e[:, k].mean(axis=0), fold_f[:, k].mean(axis=0))
                                 for k in range(len(evaluated))]
    out["fold_soup_test"] = soup
    out["methods"] = {
        "soup-last": {"epoch": epochs, "test": soup[-1]},
        "cv-soup": {"epoch": evaluated[e_cv], "test": soup[e_cv]},
        "split": {"epoch": evaluated[e_split], "test": split["test"][e_split]},
        "last": {"epoch": epochs, "test": full["test"][-1]},
        "cv": {"epoch": evaluated[e_cv], "test": full["test"][e_cv]},
        "cv-ens": {"epoch": evaluated[e_cv], "test": ens},
        "oracle": {"epoch": evaluated[int(np.argmin([t[0] for t in full["test"]]))],
                   "test": min(full["test"], key=lambda t: t[0])},
        "zero-shot": {"epoch": 0, "test": full["test"][0]},
    }
    return out


def soup_model(pretrained, models, pool):
    """What gmnn-finetune keeps: the mean of the fold models' weights (a 'model soup'), shifts
    re-fitted on all N."""
    from gmnn.scale_shift import fit_scale_shift
    from gmnn.selection import mean_weights
    model = copy.deepcopy(pretrained)
    model.load_state_dict(mean_weights(models))
    fit_scale_shift(model, pool, scale=False)
    return model


def curve_run(trainer, epochs, every, rec):
    """Validation loss (when the trainer has validation data) and test errors at evaluated epochs."""
    valid, test = [], []
    for epoch in range(epochs + 1):
        if epoch:
            trainer.train_epoch()
            trainer.epoch = epoch
        if epoch % every == 0:
            if trainer.data.valid:
                valid.append(trainer.validate()["loss"])
            test.append(rec.errors(*rec.predict(trainer.model)))
            trainer.model.train()
    return {"valid_loss": valid, "test": test}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", help="pre-trained PBE checkpoint")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--epochs", type=int, default=800)
    p.add_argument("--every", type=int, default=10, help="evaluate every this many epochs")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--lr", type=float, nargs="+", default=[0.003])
    p.add_argument("--layer-lr-factor", type=float, nargs="+", default=[2.6])
    p.add_argument("--anchor-weight", type=float, nargs="+", default=[0.0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="runs/selection_study.json")
    p.add_argument("--report", default=None, help="no runs: write selection_study.md and .png from --out into this folder")
    args = p.parse_args()
    out_path = Path(args.out)
    if args.report:
        results = json.loads(out_path.read_text())
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        (report / "selection_study.md").write_text(table(results))
        plot(results, report / "selection_study.png")
        print(table(results))
        return

    pretrained = load_model(args.pretrained)
    z, rc = pretrained.atomic_numbers, pretrained.cutoff
    energies = read_structures(HERE / "data" / "ethanol_ccsdt_ccpvdz.xyz")
    with_forces = read_structures(HERE / "data" / "ethanol_ccsdt_ccpvdz_forces.xyz")
    test_structures = energies[50:100]
    force_test = [s for s in with_forces if any(np.allclose(s.positions, t.positions) for t in test_structures)]
    rec = TestRecorder(build_graphs(test_structures, z, rc), build_graphs(force_test, z, rc))
    pool_all = build_graphs(energies[0:50], z, rc)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for n, lr, factor, anchor, batch, seed in itertools.product(args.sizes, args.lr, args.layer_lr_factor,
                                                                args.anchor_weight, args.batch_size, args.seeds):
        setting = {"lr": lr, "layer_lr_factor": factor, "anchor_weight": anchor, "batch_size": batch, "seed": seed}
        key = f"n{n} lr{lr} f{factor} a{anchor} b{batch} s{seed} e{args.epochs}"
        if key in results:
            continue
        started = time.perf_counter()
        # seed 0: frames 0..N-1 (as the README's table); other seeds: a random N of frames 0-49
        chosen = np.arange(n) if seed == 0 else np.random.default_rng(seed).permutation(len(pool_all))[:n]
        row = run_setting(pretrained, [pool_all[k] for k in chosen], rec, setting, args.epochs, args.every, args.folds)
        row["frames"] = chosen.tolist()
        row.update(n=n, setting=setting, seconds=time.perf_counter() - started)
        results[key] = row
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
        print(key, f"({row['seconds']:.0f} s)")
        for name, m in row["methods"].items():
            print(f"  {name:10s} epoch {m['epoch']:4d}  E {m['test'][0]:.3f} kcal/mol  F {m['test'][1]:.2f} kcal/mol/A")


METHODS = [("split", "split 80/20, best epoch"), ("last", "all N, last epoch"), ("cv", "CV epoch, refit on all N"),
           ("cv-ens", "CV epoch, ensemble of folds"), ("cv-soup", "CV epoch, soup of folds"),
           ("soup-last", "soup of folds, last epoch (gmnn-finetune)"),
           ("zero-shot", "zero-shot"), ("oracle", "oracle (best test epoch)")]


def table(results) -> str:
    """Markdown: test energy / force MAE (kcal/mol, kcal/mol/A) per N and seed, and the mean over seeds."""
    rows = ["| N | seed | " + " | ".join(name for _, name in METHODS) + " |", "|---" * (len(METHODS) + 2) + "|"]
    by_n = {}
    for row in results.values():  # runs from before the method existed: read it off the soup curve
        row["methods"].setdefault("soup-last", {"epoch": row["epochs_evaluated"][-1], "test": row["fold_soup_test"][-1]})
    for row in sorted(results.values(), key=lambda r: (r["n"], r["setting"]["seed"])):
        by_n.setdefault(row["n"], []).append(row)
        cell = lambda m: f"{row['methods'][m]['test'][0]:.3f} / {row['methods'][m]['test'][1]:.2f} (ep {row['methods'][m]['epoch']})"
        rows.append(f"| {row['n']} | {row['setting']['seed']} | " + " | ".join(cell(m) for m, _ in METHODS) + " |")
    for n, group in by_n.items():
        if len(group) > 1:
            mean = lambda m, k: np.mean([r["methods"][m]["test"][k] for r in group])
            rows.append(f"| {n} | mean of {len(group)} | " + " | ".join(f"{mean(m, 0):.3f} / {mean(m, 1):.2f}"
                                                                   for m, _ in METHODS) + " |")
    return "\n".join(rows) + "\n"


def plot(results, path, n=50, seed=0):
    """Test energy MAE after each evaluated epoch: the all-N run, the 80/20 run, the fold soup,
    with the pooled cross-validation loss (what chooses the epoch) on a second axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    row = next(r for r in results.values() if r["n"] == n and r["setting"]["seed"] == seed)
    epochs = row["epochs_evaluated"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(epochs, [t[0] for t in row["full_test"]], label="all N, no selection", color="0.6")
    ax.plot(epochs, [t[0] for t in row["split_test"]], label="80/20 split", color="tab:orange")
    ax.plot(epochs, [t[0] for t in row["fold_soup_test"]], label="soup of the 5 fold models", color="tab:blue")
    for key, color in (("split", "tab:orange"), ("cv-soup", "tab:blue")):
        ax.axvline(row["methods"][key]["epoch"], color=color, ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("CCSD(T) test energy MAE (kcal/mol)")
    twin = ax.twinx()
    twin.plot(epochs, np.sqrt(np.array(row["cv_curve"])) * 1000, color="tab:green", lw=1, alpha=0.7,
              label="pooled CV loss (right)")
    twin.set_ylabel("cross-validation energy RMSE (meV/atom)")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=8)
    ax.set_title(f"Ethanol, N = {n} CCSD(T) energies: choosing the fine-tuned model (dotted: chosen epochs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
