"""The two routes to a CCSD(T) model of ethanol, a molecule the organic models never saw, in one
plot: the shipped organic-pbe-def2svp fine-tuned on N CCSD(T) energies (no DFT of ethanol) against
the per-molecule pipeline (pre-trained on 1,300 PBE frames of ethanol first), with their zero-shot
baselines. Reads the committed results; writes results/routes_ethanol.png.

    python examples/organic/compare_routes.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROUTES = {  # label -> results.json of examples/transfer_learning/run_experiment.py
    "organic-pbe-def2svp (no ethanol DFT)": HERE / "results" / "tl_organic_pbe.json",
    "per-molecule pipeline (1,300 ethanol PBE)": HERE.parent / "transfer_learning" / "results" / "results.json",
}
KINDS = {"finetune_energy_only": ("o-", "fine-tuned"), "zero_shot": ("^:", "zero-shot")}


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for (route, path), color in zip(ROUTES.items(), ("C0", "C3")):
        runs = json.loads(path.read_text())["runs"]
        for key, (style, kind) in KINDS.items():
            rows = [r for r in runs if key in r]
            for ax, metric in zip(axes, ("energy_mae_kcal", "forces_mae_kcal")):
                ax.loglog([r["n"] for r in rows], [r[key][metric] for r in rows], style, color=color,
                          label=f"{route}, {kind}")
    axes[0].set_ylabel("CCSD(T) test energy MAE (kcal/mol)")
    axes[1].set_ylabel("CCSD(T) test force MAE (kcal/mol/Å)")
    for ax in axes:
        ax.set_xlabel("CCSD(T) energies of ethanol N (no CCSD(T) forces)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Ethanol (unseen): shipped organic model vs per-molecule pipeline, 50 test energies, 13 force sets")
    fig.tight_layout()
    out = HERE / "results" / "routes_ethanol.png"
    fig.savefig(out, dpi=120)
    print("wrote", out)


if __name__ == "__main__":
    main()
