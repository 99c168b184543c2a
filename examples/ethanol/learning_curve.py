"""Learning curve of GM-NN on the shipped rMD17 ethanol frames.

Trains the model of train.yaml on the first N = 10, 20, 40, 80 frames, validates on the last
20 each time, and compares with the per-element-shift baseline (the untrained network,
i.e. only the least-squares energy shifts). Writes learning_curve.json and
learning_curve.png into the output directory.

    python examples/ethanol/learning_curve.py [--epochs 1000] [--out runs/ethanol_lc]
"""
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from gmnn.config import load_config
from gmnn.dataset import load_data
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.model import GMNN, ModelOptions
from gmnn.scale_shift import fit_scale_shift
from gmnn.training import Trainer

HERE = Path(__file__).resolve().parent


def shift_baseline(config, data):
    """Validation errors of the energy shifts alone (network output zeroed)."""
    model = GMNN(ModelOptions.from_config(config.model, data.elements))
    fit_scale_shift(model, data.train)
    model.scale_shift.scale.zero_()
    return error_metrics(predict_graphs(model, data.valid))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "train.yaml"))
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 80])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default="runs/ethanol_lc")
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for n in args.sizes:
        config = load_config(args.config)
        config.output_dir = str(out / f"n{n}")
        config.data.n_train = n
        if args.epochs:
            config.training.epochs = args.epochs
        data = load_data(config)
        baseline = shift_baseline(config, data)
        finished = Path(config.output_dir) / "final_metrics.json"
        if finished.exists():  # a size finished by an earlier, interrupted run is reused
            result = json.loads(finished.read_text())
        else:
            result = Trainer(config, data=data, show_progress=False).run()
        rows.append({"n_train": n, "gmnn": result["valid"], "shift_baseline": baseline})
        print(f"N={n}: valid E MAE {1000 * result['valid']['energy_mae']:.1f} meV, "
              f"F MAE {1000 * result['valid']['forces_mae']:.1f} meV/A "
              f"(baseline E {1000 * baseline['energy_mae']:.1f} meV)", flush=True)
    (out / "learning_curve.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "learning_curve.png")
    print(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = [r["n_train"] for r in rows]
    from gmnn.units import ENERGY_UNITS
    kcal = 1 / ENERGY_UNITS["kcal/mol"]  # kcal/mol per eV
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.8))
    ax[0].loglog(n, [kcal * r["gmnn"]["energy_mae"] for r in rows], "o-", label="GM-NN")
    ax[0].loglog(n, [kcal * r["shift_baseline"]["energy_mae"] for r in rows], "s--", label="energy shifts only")
    ax[0].set_ylabel("validation energy MAE (kcal/mol)")
    ax[1].loglog(n, [kcal * r["gmnn"]["forces_mae"] for r in rows], "o-", label="GM-NN")
    ax[1].set_ylabel("validation force MAE (kcal/mol/Å)")
    for a in ax:
        a.set_xlabel("training structures")
        a.legend()
    fig.suptitle("rMD17 ethanol (PBE/def2-SVP), validation on 20 held-out frames")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
