"""Errors of a model on labelled structures: energy MAE/RMSE per structure and per atom,
force-component MAE/RMSE. Units: eV, eV/atom, eV/Angstrom (tables print meV)."""
import json
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from .data import DataError
from .graph import StructureGraph, collate
from .inference import predict


@dataclass
class Predictions:
    energy: np.ndarray            # (M,) predicted, eV
    energy_ref: np.ndarray        # (M,) reference (NaN where missing)
    n_atoms: np.ndarray           # (M,)
    forces: np.ndarray            # (sum N, 3) predicted
    forces_ref: np.ndarray        # (sum N, 3) reference (NaN where missing)
    energy_uncertainty: Optional[np.ndarray] = None   # (M,) eV, a calibrated model's sigma_E
    forces_uncertainty: Optional[np.ndarray] = None   # (sum N,) eV/A, its sigma_F per atom


def predict_graphs(model, graphs: Sequence[StructureGraph], batch_size: int = 64,
                   forces: bool = True, device="cpu", uncertainty: bool = False) -> Predictions:
    """The model's energies (and forces, and with `uncertainty` their sigmas) of `graphs` next to
    their labels; `model`: a GMNN or what loading.load returns."""
    energies, forces_pred, sigma_e, sigma_f = [], [], [], []
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start:start + batch_size]).to(device)
        out = predict(model, batch, forces=forces, uncertainty=uncertainty)
        energies.append(out["energy"].detach().cpu().numpy())
        if forces:
            forces_pred.append(out["forces"].detach().double().cpu().numpy())
        if uncertainty:
            sigma_e.append(out["energy_uncertainty"].detach().cpu().numpy())
            sigma_f.append(out["forces_uncertainty"].detach().cpu().numpy())
    nan3 = lambda g: np.full((g.n_atoms, 3), np.nan)
    return Predictions(
        energy=np.concatenate(energies) if energies else np.zeros(0),
        energy_ref=np.array([np.nan if g.energy is None else g.energy for g in graphs]),
        n_atoms=np.array([g.n_atoms for g in graphs]),
        forces=np.concatenate(forces_pred) if forces_pred else np.zeros((0, 3)),
        forces_ref=np.concatenate([g.forces.numpy() if g.forces is not None else nan3(g) for g in graphs])
        if graphs else np.zeros((0, 3)),
        energy_uncertainty=np.concatenate(sigma_e) if uncertainty and graphs else None,
        forces_uncertainty=np.concatenate(sigma_f) if uncertainty and graphs else None,
    )


def error_metrics(p: Predictions) -> Dict[str, float]:
    """MAE/RMSE of energies (eV, eV/atom) and force components (eV/A); NaN where no labels."""
    out: Dict[str, float] = {"n_structures": int(len(p.energy)), "n_atoms": int(p.n_atoms.sum())}
    has_e = np.isfinite(p.energy_ref)
    de = (p.energy - p.energy_ref)[has_e]
    de_atom = de / p.n_atoms[has_e]
    out["energy_mae"] = float(np.mean(np.abs(de))) if len(de) else float("nan")
    out["energy_rmse"] = float(np.sqrt(np.mean(de**2))) if len(de) else float("nan")
    out["energy_per_atom_mae"] = float(np.mean(np.abs(de_atom))) if len(de) else float("nan")
    out["energy_per_atom_rmse"] = float(np.sqrt(np.mean(de_atom**2))) if len(de) else float("nan")
    has_f = np.all(np.isfinite(p.forces_ref), axis=1) if len(p.forces) else np.zeros(0, bool)
    df = (p.forces - p.forces_ref)[has_f] if len(p.forces) else np.zeros((0, 3))
    out["forces_mae"] = float(np.mean(np.abs(df))) if df.size else float("nan")
    out["forces_rmse"] = float(np.sqrt(np.mean(df**2))) if df.size else float("nan")
    if p.energy_uncertainty is not None:
        out.update(uncertainty_metrics(p))
    return out


def observed_errors(p: Predictions):
    """|E - E_ref| per structure and the RMS force-component error per atom, |F - F_ref| / sqrt(3)
    (what sigma_E and sigma_F predict; NaN where no labels)."""
    return np.abs(p.energy - p.energy_ref), np.linalg.norm(p.forces - p.forces_ref, axis=1) / np.sqrt(3.0)


def uncertainty_metrics(p: Predictions) -> Dict[str, float]:
    """How well the sigmas predict the errors: Spearman rank correlation, and the RMS of
    error / sigma (1 when calibrated: below, sigma is too large; above, too small)."""
    from .uncertainty import rank_correlation
    out = {"energy_uncertainty_mean": float(np.mean(p.energy_uncertainty)),
           "forces_uncertainty_mean": float(np.mean(p.forces_uncertainty))}
    for name, err, sigma in zip(("energy", "forces"), observed_errors(p), (p.energy_uncertainty, p.forces_uncertainty)):
        has = np.isfinite(err)
        enough = has.sum() >= 3
        out[f"{name}_uncertainty_spearman"] = rank_correlation(sigma[has], err[has]) if enough else float("nan")
        out[f"{name}_error_over_uncertainty_rms"] = float(np.sqrt(np.mean((err[has] / sigma[has]) ** 2))) \
            if has.any() else float("nan")
    return out


def write_predictions_csv(path, p: Predictions, name: str, append: bool = False) -> None:
    """One row per structure: reference and predicted energy, its error and (if any) sigma_E, the
    largest per-atom force error and sigma_F (eV, eV/A)."""
    import csv
    e_err, f_err = observed_errors(p)
    bounds = np.concatenate([[0], np.cumsum(p.n_atoms)])
    with open(path, "a" if append else "w", newline="") as f:
        w = csv.writer(f)
        if not append:
            w.writerow(["file", "index", "n_atoms", "energy_ref", "energy", "energy_abs_error", "energy_uncertainty",
                        "max_atom_force_error", "max_forces_uncertainty"])
        for k in range(len(p.energy)):
            atoms = slice(bounds[k], bounds[k + 1])
            sig_e = p.energy_uncertainty[k] if p.energy_uncertainty is not None else float("nan")
            sig_f = p.forces_uncertainty[atoms].max() if p.forces_uncertainty is not None else float("nan")
            w.writerow([name, k, int(p.n_atoms[k]), p.energy_ref[k], p.energy[k], e_err[k], sig_e,
                        np.max(f_err[atoms]) if p.n_atoms[k] else float("nan"), sig_f])


def evaluate(model, graphs, batch_size=64, device="cpu", forces=True, uncertainty=False):
    preds = predict_graphs(model, graphs, batch_size, forces=forces, device=device, uncertainty=uncertainty)
    return error_metrics(preds), preds


COLUMNS = [  # header, unit, metric, decimals (energies and forces are printed in meV)
    ("N", "", "n_structures", None), ("E MAE", "meV", "energy_mae", 3), ("E RMSE", "meV", "energy_rmse", 3),
    ("E/atom MAE", "meV/atom", "energy_per_atom_mae", 3), ("E/atom RMSE", "meV/atom", "energy_per_atom_rmse", 3),
    ("F MAE", "meV/A", "forces_mae", 2), ("F RMSE", "meV/A", "forces_rmse", 2)]
MIN_WIDTHS = [12, 6, 11, 11, 13, 13, 11, 11]


def format_table(metrics_by_set: Dict[str, Dict[str, float]]) -> str:
    """A table in meV units, one row per data set. Columns are right-aligned and widen to their
    widest entry, so numbers never run together (an error of 1.2e8 meV used to touch the next)."""
    cell = lambda m, key, decimals: f"{m[key]}" if decimals is None else f"{1000.0 * m[key]:.{decimals}f}"
    lines = [["set"] + [c[0] for c in COLUMNS], [""] + [c[1] for c in COLUMNS]]
    lines += [[name] + [cell(m, key, decimals) for _, _, key, decimals in COLUMNS] for name, m in metrics_by_set.items()]
    widths = [max([minimum] + [len(line[k]) + 2 for line in lines]) for k, minimum in enumerate(MIN_WIDTHS)]
    return "\n".join((line[0].ljust(widths[0]) + "".join(text.rjust(w) for text, w in zip(line[1:], widths[1:])))
                     .rstrip() for line in lines)


def check_energies_against_model(where: str, p: Predictions, limit: Optional[float], read_as: str) -> None:
    """A DataError when the model's energies lie more than `limit` eV/atom from the reference for
    most structures: no model is that wrong, so the reference is in other units or at another
    level of theory (energy zero). `read_as` says which unit the file's energies were read in."""
    has = np.isfinite(p.energy_ref)
    if limit is None or not has.any():
        return
    off = np.abs(p.energy - p.energy_ref)[has] / p.n_atoms[has]
    n_off = int(np.count_nonzero(off > limit))
    if n_off > has.sum() / 2:
        raise DataError(f"{where}: the model's energies differ from the reference by more than {limit} eV/atom for "
                        f"{n_off} of the {int(has.sum())} structures (median {np.median(off):.3g} eV/atom): the "
                        f"reference is probably in other units (read as {read_as}; give the unit with --energy-unit) "
                        "or at another level of theory; --energy-outlier-limit none evaluates anyway")


def write_json(path, payload) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=float)
