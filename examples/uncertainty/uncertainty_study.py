"""Which uncertainty, measured (issue 14 item 1): does a model's sigma rank its errors, and does it
flag structures unlike its training data?

1. A PBE/def2-SVP ethanol model trained on 300 K and 500 K xTB-MD frames only (gmnn-train; its
   uncertainty is calibrated on its validation frames). Test: held-out 300/500 K frames (in
   domain), 700/1000 K frames (hotter: larger errors), and ethanol dimers in contact (two test
   molecules 1.7-2.8 Å apart: out of domain for a monomer model; no labels needed).
2. That model fine-tuned on N = 25 CCSD(T)/cc-pVDZ energies (gmnn-finetune defaults: 5-fold
   cross-validation, soup; uncertainty calibrated on the folds' held-out errors), tested on the
   50 held-out CCSD(T) energies and the dimers.

Methods compared on the same structures:
- LLPR (uncertainty.py, what gmnn ships): sigma_E per structure, sigma_F per atom (own share);
- LLPR with sigma_F from the root-sum-square of the neighbours' shares (what the force on an
  atom depends on), for comparison only;
- the ensemble of the 5 fold models of the fine-tune (spread of energies and forces): 5x the cost.

Scores: Spearman rank correlation of sigma with the observed error (energies per structure,
forces per atom), RMS(error / sigma) (1 = calibrated), ROC AUC of separating out-of-domain
structures by max per-atom sigma_F (and sigma_E per atom). Writes results/uncertainty_study.json,
.md and calibration.png. Finished runs under --out are reused.

    python examples/uncertainty/uncertainty_study.py [--epochs 300]
"""
import argparse
import json
from pathlib import Path

import numpy as np

from gmnn import uncertainty
from gmnn.checkpoint import load_model
from gmnn.config import config_from_dict
from gmnn.data import Structure, read_structures, write_structures
from gmnn.evaluation import observed_errors, predict_graphs
from gmnn.finetuning import finetune
from gmnn.graph import build_graphs
from gmnn.training import Trainer

HERE = Path(__file__).resolve().parent
TL = HERE.parent / "transfer_learning" / "data"
PBE_500K = TL / "ethanol_md500K_pbe_def2svp.xyz"
PBE_MIXED = TL / "ethanol_xtb_md_300-1000K_pbe_def2svp.xyz"   # frame k at 300/500/700/1000 K for k mod 4
CCSDT = TL / "ethanol_ccsdt_ccpvdz.xyz"
TEMPERATURES = (300, 500, 700, 1000)
# the labelled prefix of PBE_MIXED the study uses: fixed, so that the train/valid/test split
# stays the same while more labels are appended (649 frames when the models were trained)
MIXED_FRAMES = 649


def split_pbe():
    """train/valid/test at 300-500 K and the hot test frames, from the committed PBE labels."""
    mixed = read_structures(PBE_MIXED, index=f":{MIXED_FRAMES}")
    by_t = {t: [s for k, s in enumerate(mixed) if k % 4 == i] for i, t in enumerate(TEMPERATURES)}
    cold = read_structures(PBE_500K) + by_t[300] + by_t[500]
    order = np.random.default_rng(0).permutation(len(cold))
    cold = [cold[k] for k in order]
    n_test = len(cold) // 5
    n_valid = len(cold) // 10
    return {"train": cold[n_test + n_valid:], "valid": cold[n_test:n_test + n_valid], "test_300-500K": cold[:n_test],
            "test_700K": by_t[700], "test_1000K": by_t[1000]}


def dimers(monomers, n, seed=0):
    """Two monomers in contact: the second rotated at random and moved along a random direction
    until its closest atom is d ~ U(1.7, 2.8) Å from the first molecule."""
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a, b = monomers[rng.integers(len(monomers))], monomers[rng.integers(len(monomers))]
        pa = a.positions - a.positions.mean(0)
        pb = Rotation.random(random_state=rng.integers(2**31)).apply(b.positions - b.positions.mean(0))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        target = rng.uniform(1.7, 2.8)
        lo, hi = 0.0, 20.0
        for _ in range(60):  # bisection on the centre distance
            mid = 0.5 * (lo + hi)
            gap = np.min(np.linalg.norm(pa[:, None] - (pb + mid * direction)[None], axis=2))
            lo, hi = (mid, hi) if gap < target else (lo, mid)
        out.append(Structure(numbers=np.concatenate([a.numbers, b.numbers]),
                             positions=np.concatenate([pa, pb + hi * direction])))
    return out


def neighbour_rss(graph, sigma_atom):
    """sqrt(sum of sigma_j^2 over atom i and its neighbours within the cutoff), per atom."""
    out = sigma_atom ** 2
    np.add.at(out, graph.centers.numpy(), sigma_atom[graph.neighbors.numpy()] ** 2)
    return np.sqrt(out)


def auc(inside, outside):
    """ROC AUC of telling `outside` (positive) from `inside` by a larger score (Mann-Whitney)."""
    from scipy.stats import rankdata
    ranks = rankdata(np.concatenate([inside, outside]))
    n0, n1 = len(inside), len(outside)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def per_structure_max(values, n_atoms):
    bounds = np.concatenate([[0], np.cumsum(n_atoms)])
    return np.array([values[bounds[k]:bounds[k + 1]].max() for k in range(len(n_atoms))])


def llpr_scores(model, graphs):
    p = predict_graphs(model, graphs, uncertainty=True)
    e_err, f_err = observed_errors(p)
    unit = p.forces_uncertainty / float(model.uncertainty.force_scale)
    rss = np.concatenate([neighbour_rss(g, unit[b:b + g.n_atoms])
                          for g, b in zip(graphs, np.concatenate([[0], np.cumsum(p.n_atoms)])[:-1])])
    return {"p": p, "e_err": e_err, "f_err": f_err, "sigma_e": p.energy_uncertainty, "sigma_f": p.forces_uncertainty,
            "sigma_f_rss": rss}


def ensemble_scores(models, graphs):
    preds = [predict_graphs(m, graphs) for m in models]
    energies = np.stack([p.energy for p in preds])
    forces = np.stack([p.forces for p in preds])
    return {"sigma_e": energies.std(0, ddof=1), "sigma_f": np.linalg.norm(forces.std(0, ddof=1), axis=1) / np.sqrt(3)}


def covariance_variants(model, train_graphs, valid_graphs, test_graphs, dimer_graphs, n_cold):
    """LLPR with C from structures (shipped) or from atoms (sum of phi_i phi_i^T), each
    calibrated on the validation frames: Spearman on the pooled tests, AUC for the dimers."""
    train = uncertainty.structure_features(model, train_graphs)
    held = uncertainty.held_out_errors(model, valid_graphs)
    tests = [uncertainty.held_out_errors(model, g) for g in test_graphs]
    dimer = uncertainty.structure_features(model, dimer_graphs)
    out = {}
    for kind, cov in (("structures", train["Phi"].T @ train["Phi"]), ("atoms", train["phi"].T @ train["phi"])):
        c = uncertainty.calibrate([(cov, held)])
        w = uncertainty.whitening(cov, c["regulariser_fraction"] * uncertainty.mean_eigenvalue(cov))
        sig_e = lambda Phi: np.sqrt(c["energy_scale"] ** 2 * np.sum((Phi @ w) ** 2, 1) + c["energy_floor"] ** 2)
        sig_f = lambda phi: np.sqrt(c["force_scale"] ** 2 * np.sum((phi @ w) ** 2, 1) + c["force_floor"] ** 2)
        e = np.concatenate([sig_e(t["Phi"]) for t in tests])
        f = np.concatenate([sig_f(t["phi"]) for t in tests])
        e_err = np.concatenate([np.abs(t["energy_error"]) for t in tests])
        f_err = np.concatenate([t["force_error"] for t in tests])
        n_d = len(dimer_graphs)
        cold = {"sigma_e": sig_e(tests[0]["Phi"]), "sigma_f": sig_f(tests[0]["phi"])}
        dim = {"sigma_e": sig_e(dimer["Phi"]), "sigma_f": sig_f(dimer["phi"])}
        out[kind] = {"spearman_energy": spearman(e, e_err), "spearman_forces": spearman(f, f_err),
                     **ood(cold, dim, n_cold, np.full(n_d, dimer_graphs[0].n_atoms))}
    return out


def spearman(sigma, err):
    has = np.isfinite(err)
    return uncertainty.rank_correlation(sigma[has], err[has]) if has.sum() > 2 else float("nan")


def z_rms(sigma, err):
    has = np.isfinite(err)
    return float(np.sqrt(np.mean((err[has] / sigma[has]) ** 2))) if has.any() else float("nan")


def summarize(scores, err_key_e="e_err", err_key_f="f_err", errors=None):
    errors = errors or scores
    return {"spearman_energy": spearman(scores["sigma_e"], errors[err_key_e]),
            "spearman_forces": spearman(scores["sigma_f"], errors[err_key_f]),
            "rms_error_over_sigma_energy": z_rms(scores["sigma_e"], errors[err_key_e]),
            "rms_error_over_sigma_forces": z_rms(scores["sigma_f"], errors[err_key_f])}


def ood(scores_in, scores_out, n_in, n_out):
    return {"auc_max_sigma_f": auc(per_structure_max(scores_in["sigma_f"], n_in),
                                   per_structure_max(scores_out["sigma_f"], n_out)),
            "auc_sigma_e_per_atom": auc(scores_in["sigma_e"] / n_in, scores_out["sigma_e"] / n_out)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/uncertainty")
    p.add_argument("--epochs", type=int, default=300, help="PBE training epochs")
    p.add_argument("--n-finetune", type=int, default=25)
    p.add_argument("--dimers", type=int, default=100)
    p.add_argument("--ensemble", type=int, default=5,
                   help="models (different seeds) in the deep-ensemble baseline of the PBE model; 0: skip")
    args = p.parse_args()
    out = Path(args.out)
    sets = split_pbe()
    for name in ("train", "valid"):
        write_structures(sets[name], out / f"pbe_{name}.xyz")
    pbe_cfg = config_from_dict({
        "output_dir": str(out / "pbe_300-500K"),
        "data": {"train_file": str(out / "pbe_train.xyz"), "valid_file": str(out / "pbe_valid.xyz")},
        "model": {"hidden": [256, 256], "dtype": "float32", "cutoff": 5.0},
        "training": {"epochs": args.epochs, "batch_size": 16, "lr": 0.01, "force_weight": 4.0, "threads": 1}})
    if not (Path(pbe_cfg.output_dir) / "final_metrics.json").exists():
        Trainer(pbe_cfg, show_progress=True).run()
    pbe = load_model(Path(pbe_cfg.output_dir) / "best.ckpt")
    graph = lambda structures: build_graphs(structures, pbe.atomic_numbers, pbe.cutoff)
    test_names = ("test_300-500K", "test_700K", "test_1000K")
    tests = {name: graph(sets[name]) for name in test_names}
    dimer_graphs = graph(dimers(sets["test_300-500K"], args.dimers))
    n_of = lambda graphs: np.array([g.n_atoms for g in graphs])

    results = {"pbe_model": {"training_structures": len(sets["train"]), "validation_structures": len(sets["valid"]),
                             "calibration": {k: float(getattr(pbe.uncertainty, k)) for k in
                                             ("energy_scale", "force_scale", "regulariser")}}}
    scores = {name: llpr_scores(pbe, g) for name, g in tests.items()}
    pooled = {k: np.concatenate([scores[n][k] for n in test_names]) for k in ("sigma_e", "sigma_f", "sigma_f_rss",
                                                                            "e_err", "f_err")}
    dimer_scores = llpr_scores(pbe, dimer_graphs)
    r = results["pbe_model"]
    for name in test_names:
        s = scores[name]
        r[name] = {"n": len(tests[name]), "energy_mae": float(np.nanmean(s["e_err"])),
                   "forces_rmse_per_atom": float(np.sqrt(np.nanmean(s["f_err"] ** 2))), **summarize(s)}
    n_all = np.concatenate([n_of(tests[n]) for n in test_names])
    rms = lambda values: np.sqrt(np.array([np.mean(v ** 2) for v in np.split(values, np.cumsum(n_all)[:-1])]))
    r["all_tests"] = {**summarize(pooled), "spearman_forces_neighbour_rss": spearman(pooled["sigma_f_rss"], pooled["f_err"]),
                      # per structure: RMS of sigma_F over its atoms against its RMS force error
                      "spearman_forces_per_structure": spearman(rms(pooled["sigma_f"]), rms(pooled["f_err"]))}
    cold_n = n_of(tests["test_300-500K"])
    r["ood_dimers"] = ood(scores["test_300-500K"], dimer_scores, cold_n, n_of(dimer_graphs))
    r["ood_1000K"] = ood(scores["test_300-500K"], scores["test_1000K"], cold_n, n_of(tests["test_1000K"]))
    if args.ensemble > 1:
        # members trained with other seeds; compared on the 700 K and 1000 K frames only, which
        # no model saw (the members' 300/500 K split differed from the main model's)
        members = [pbe] + [trained_member(pbe_cfg, seed) for seed in range(1, args.ensemble)]
        hot = ("test_700K", "test_1000K")
        ens = {name: ensemble_scores(members, tests[name]) for name in hot}
        err = {k: np.concatenate([scores[n][k] for n in hot]) for k in ("e_err", "f_err", "sigma_e", "sigma_f")}
        ens_pooled = {k: np.concatenate([ens[n][k] for n in hot]) for k in ("sigma_e", "sigma_f")}
        r["hot_tests_llpr_vs_deep_ensemble"] = {
            "test_sets": list(hot), "ensemble_models": len(members),
            "llpr": {"spearman_energy": spearman(err["sigma_e"], err["e_err"]),
                     "spearman_forces": spearman(err["sigma_f"], err["f_err"])},
            "deep_ensemble": {"spearman_energy": spearman(ens_pooled["sigma_e"], err["e_err"]),
                              "spearman_forces": spearman(ens_pooled["sigma_f"], err["f_err"])}}
    valid_graphs = graph(sets["valid"])
    r["covariance_variants"] = covariance_variants(pbe, graph(sets["train"]), valid_graphs,
                                                   [tests[n] for n in test_names], dimer_graphs, cold_n)
    print(json.dumps(results, indent=1), flush=True)

    # 2. fine-tune on CCSD(T) energies
    ccsdt_cfg = config_from_dict({"output_dir": str(out / f"ccsdt_n{args.n_finetune}"),
                                  "data": {"train_file": str(CCSDT), "train_index": f"0:{args.n_finetune}"},
                                  "training": {"force_weight": 0.0, "threads": 1}})
    run = Path(ccsdt_cfg.output_dir)
    if not (run / "final_metrics.json").exists():
        finetune(ccsdt_cfg, Path(pbe_cfg.output_dir) / "best.ckpt", show_progress=True, overwrite=True)
    tuned = load_model(run / "best.ckpt")
    folds = [load_model(path) for path in sorted((run / "folds").glob("fold*.ckpt"))]
    test = build_graphs(read_structures(CCSDT, index="50:100"), tuned.atomic_numbers, tuned.cutoff)
    mono = llpr_scores(tuned, test)
    ens = ensemble_scores(folds, test)
    ens_dimers = ensemble_scores(folds, dimer_graphs)
    tuned_dimers = llpr_scores(tuned, dimer_graphs)
    n_test = n_of(test)
    results["ccsdt_finetune"] = {
        "n_finetune": args.n_finetune, "test_structures": len(test), "energy_mae": float(np.mean(mono["e_err"])),
        "llpr": {"spearman_energy": spearman(mono["sigma_e"], mono["e_err"]),
                 "rms_error_over_sigma_energy": z_rms(mono["sigma_e"], mono["e_err"]),
                 **ood(mono, tuned_dimers, n_test, n_of(dimer_graphs))},
        "fold_ensemble": {"spearman_energy": spearman(ens["sigma_e"], mono["e_err"]),
                          **ood(ens, ens_dimers, n_test, n_of(dimer_graphs))},
        "calibration": json.loads((run / "final_metrics.json").read_text()).get("uncertainty", {})}
    print(json.dumps(results["ccsdt_finetune"], indent=1), flush=True)
    target = HERE / "results"
    target.mkdir(exist_ok=True)
    (target / "uncertainty_study.json").write_text(json.dumps(results, indent=2))
    (target / "uncertainty_study.md").write_text(table(results))
    plot(scores, pooled, dimer_scores, test_names, target / "calibration.png")
    print(table(results))


def trained_member(config, seed):
    """The PBE model trained again with another seed (initial weights and batch order)."""
    import copy
    member = copy.deepcopy(config)
    member.output_dir = f"{config.output_dir}_seed{seed}"
    member.training.seed = seed
    if not (Path(member.output_dir) / "final_metrics.json").exists():
        Trainer(member, show_progress=True).run()
    return load_model(Path(member.output_dir) / "best.ckpt")


def table(results) -> str:
    r = results["pbe_model"]
    rows = ["| PBE model (300-500 K training), test set | N | E MAE (meV) | Spearman E | Spearman F | RMS(err/σ) E | RMS(err/σ) F |",
            "|---|---|---|---|---|---|---|"]
    for name in ("test_300-500K", "test_700K", "test_1000K"):
        s = r[name]
        rows.append(f"| {name} | {s['n']} | {1000 * s['energy_mae']:.1f} | {s['spearman_energy']:.2f} | "
                    f"{s['spearman_forces']:.2f} | {s['rms_error_over_sigma_energy']:.2f} | "
                    f"{s['rms_error_over_sigma_forces']:.2f} |")
    a = r["all_tests"]
    rows.append(f"| all tests pooled | | | {a['spearman_energy']:.2f} | {a['spearman_forces']:.2f} per atom, "
                f"{a['spearman_forces_per_structure']:.2f} per structure | {a['rms_error_over_sigma_energy']:.2f} | "
                f"{a['rms_error_over_sigma_forces']:.2f} |")
    rows += ["", "| out of domain vs 300-500 K test | ROC AUC, max σ_F | ROC AUC, σ_E per atom |", "|---|---|---|"]
    for key, label in (("ood_dimers", "ethanol dimers in contact"), ("ood_1000K", "1000 K frames")):
        rows.append(f"| {label} | {r[key]['auc_max_sigma_f']:.3f} | {r[key]['auc_sigma_e_per_atom']:.3f} |")
    rows += ["", "| PBE model, LLPR posterior over (pooled tests) | Spearman E | Spearman F | AUC dimers (max σ_F) |",
             "|---|---|---|---|"]
    v = r["covariance_variants"]
    for kind, label in (("atoms", "training atoms (shipped)"), ("structures", "training structures (textbook LLPR)")):
        rows.append(f"| {label} | {v[kind]['spearman_energy']:.2f} | {v[kind]['spearman_forces']:.2f} | "
                    f"{v[kind]['auc_max_sigma_f']:.3f} |")
    if "hot_tests_llpr_vs_deep_ensemble" in r:
        h = r["hot_tests_llpr_vs_deep_ensemble"]
        rows += ["", "| 700 K + 1000 K tests (no model saw them) | cost | Spearman E | Spearman F (per atom) |",
                 "|---|---|---|---|",
                 f"| LLPR (shipped) | 1 model | {h['llpr']['spearman_energy']:.2f} | {h['llpr']['spearman_forces']:.2f} |",
                 f"| deep ensemble (seeds 0-{h['ensemble_models'] - 1}) | {h['ensemble_models']} models | "
                 f"{h['deep_ensemble']['spearman_energy']:.2f} | {h['deep_ensemble']['spearman_forces']:.2f} |"]
    if "ccsdt_finetune" in results:
        c = results["ccsdt_finetune"]
        rows += ["", f"| fine-tuned on {c['n_finetune']} CCSD(T) energies ({c['test_structures']} test energies, "
                     f"MAE {1000 * c['energy_mae']:.1f} meV) | Spearman E | ROC AUC dimers, max σ_F | cost |",
                 "|---|---|---|---|",
                 f"| LLPR (shipped) | {c['llpr']['spearman_energy']:.2f} | {c['llpr']['auc_max_sigma_f']:.3f} | 1 model |",
                 f"| ensemble of the 5 fold models | {c['fold_ensemble']['spearman_energy']:.2f} | "
                 f"{c['fold_ensemble']['auc_max_sigma_f']:.3f} | 5 models |"]
    return "\n".join(rows) + "\n"


def plot(scores, pooled, dimer_scores, test_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for name in test_names:
        s = scores[name]
        axes[0].loglog(1000 * s["sigma_e"], 1000 * s["e_err"], ".", ms=4, label=name)
        axes[1].loglog(1000 * s["sigma_f"], 1000 * s["f_err"], ".", ms=2, alpha=0.4, label=name)
    for ax, key in ((axes[0], "sigma_e"), (axes[1], "sigma_f")):
        lo, hi = 1000 * pooled[key].min(), 1000 * pooled[key].max()
        ax.loglog([lo, hi], [lo, hi], color="0.4", lw=1, label="error = σ")
        ax.legend(fontsize=8)
    axes[0].set(xlabel="σ_E (meV)", ylabel="|E error| (meV)", title="PBE model: energies")
    axes[1].set(xlabel="σ_F per atom (meV/Å)", ylabel="RMS force error per atom (meV/Å)", title="forces")
    cold = scores[test_names[0]]["sigma_f"].reshape(-1, 9).max(1)   # ethanol: 9 atoms
    pairs = dimer_scores["sigma_f"].reshape(-1, 18).max(1)
    bins = np.logspace(np.log10(1000 * min(cold.min(), pairs.min())), np.log10(1000 * max(cold.max(), pairs.max())), 40)
    axes[2].hist(1000 * cold, bins=bins, alpha=0.6, label="monomers, 300-500 K")
    axes[2].hist(1000 * pairs, bins=bins, alpha=0.6, label="dimers in contact")
    axes[2].set_xscale("log")
    axes[2].set(xlabel="largest σ_F of the structure (meV/Å)", ylabel="structures", title="out of domain")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
