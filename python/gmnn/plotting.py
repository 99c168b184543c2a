"""Plots people look at instead of tables: parity plots, training curves and gmnn-active's progress (PNG)."""
from pathlib import Path

import numpy as np


def _save(fig, path, title: str = "") -> Path:
    import matplotlib.pyplot as plt
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def parity_plot(predictions, path, title: str = "") -> Path:
    """Predicted vs reference energy per atom (meV/atom, relative to the mean) and force components."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    has_e = np.isfinite(predictions.energy_ref)
    n = predictions.n_atoms[has_e]
    ref = predictions.energy_ref[has_e] / n
    pred = predictions.energy[has_e] / n
    offset = ref.mean() if len(ref) else 0.0
    _parity(axes[0], 1000 * (ref - offset), 1000 * (pred - offset), "energy per atom - mean (meV/atom)")
    has_f = np.all(np.isfinite(predictions.forces_ref), axis=1)
    _parity(axes[1], 1000 * predictions.forces_ref[has_f].ravel(), 1000 * predictions.forces[has_f].ravel(),
            "force components (meV/Å)")
    return _save(fig, path, title)


def _parity(ax, ref, pred, label):
    if len(ref) == 0:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(label)
        return
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax.scatter(ref, pred, s=6, alpha=0.6)
    mae = np.mean(np.abs(pred - ref))
    rmse = np.sqrt(np.mean((pred - ref) ** 2))
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(f"MAE {mae:.3g}, RMSE {rmse:.3g}")
    ax.set_aspect("equal", adjustable="datalim")


def calibration_plot(predictions, path, title: str = "") -> Path:
    """Predicted sigma against observed error, per structure (energy) and per atom (force), log
    axes: a calibrated model's points scatter around the diagonal, and the binned RMS error (line)
    follows it."""
    from .evaluation import observed_errors
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    errors = observed_errors(predictions)
    sigmas = (predictions.energy_uncertainty, predictions.forces_uncertainty)
    for ax, err, sigma, label in zip(axes, errors, sigmas, ("energy (meV)", "force per atom (meV/Å)")):
        has = np.isfinite(err) & (sigma > 0)
        err, sigma = 1000 * err[has], 1000 * sigma[has]
        ax.set_xlabel(f"predicted σ, {label}")
        ax.set_ylabel(f"observed error, {label}")
        if len(err) < 2:
            ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.loglog(sigma, np.maximum(err, 1e-3 * sigma.min()), ".", ms=3, alpha=0.5)
        edges = np.quantile(sigma, np.linspace(0, 1, min(10, len(sigma) // 5 + 2)))
        which = np.clip(np.searchsorted(edges, sigma, side="right") - 1, 0, len(edges) - 2)
        centres = [np.sqrt(np.mean(sigma[which == b] ** 2)) for b in range(len(edges) - 1) if np.any(which == b)]
        rms = [np.sqrt(np.mean(err[which == b] ** 2)) for b in range(len(edges) - 1) if np.any(which == b)]
        ax.loglog(centres, rms, "o-", color="C3", label="RMS error per σ bin")
        lo, hi = sigma.min(), sigma.max()
        ax.loglog([lo, hi], [lo, hi], color="0.5", lw=1, label="error = σ")
        from .uncertainty import rank_correlation
        ax.set_title(f"Spearman {rank_correlation(sigma, err):.2f}")
        ax.legend(fontsize=8)
    return _save(fig, path, title)


def training_curves(metrics_csv, path) -> Path:
    """Validation energy and force MAE per epoch from a run's metrics.csv (log scale)."""
    import csv
    plt = _pyplot()
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    epoch = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(epoch, [1000 * float(r["valid_energy_per_atom_mae"]) for r in rows], label="energy MAE (meV/atom)")
    ax.semilogy(epoch, [1000 * float(r["valid_forces_mae"]) for r in rows], label="force MAE (meV/Å)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def active_learning_plot(rows, path) -> Path:
    """gmnn-active's progress (active.report_rows): MD length reached (mean and shortest
    trajectory, ps) and the force and energy errors (test set if there is one, else validation)
    against the labels the model was trained on."""
    plt = _pyplot()
    labels = [r["labels"] for r in rows]
    errors = "test" if any("test_forces_mae" in r for r in rows) else "valid"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(labels, [r["md_mean_ps"] for r in rows], "o-", label="mean over trajectories")
    left.plot(labels, [r["md_min_ps"] for r in rows], "s--", label="shortest trajectory")
    left.axhline(rows[0]["md_requested_ps"], color="grey", lw=0.8, ls=":", label="requested")
    left.set_xlabel("labels")
    left.set_ylabel("MD length reached (ps)")
    left.set_ylim(bottom=0)
    left.legend()
    for key, name, marker in (("forces_mae", "force MAE (meV/Å)", "o-"),
                              ("energy_per_atom_mae", "energy MAE (meV/atom)", "s--")):
        values = [1000 * r.get(f"{errors}_{key}", float("nan")) for r in rows]
        right.plot(labels, values, marker, label=name)
    right.set_yscale("log")
    right.set_xlabel("labels")
    right.set_ylabel(f"{errors} error")
    right.legend()
    for r in rows:
        left.annotate(str(r["iteration"]), (r["labels"], r["md_mean_ps"]), textcoords="offset points",
                      xytext=(4, 4), fontsize=8)
    fig.suptitle("gmnn-active (numbers: iteration)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
