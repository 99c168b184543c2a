"""Errors of a model on labelled structures: energy MAE/RMSE per structure and per atom,
force-component MAE/RMSE. Units: eV, eV/atom, eV/Angstrom (tables print meV)."""
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .graph import StructureGraph, collate
from .model import forces_from_edge_gradients


@dataclass
class Predictions:
    energy: np.ndarray            # (M,) predicted, eV
    energy_ref: np.ndarray        # (M,) reference (NaN where missing)
    n_atoms: np.ndarray           # (M,)
    forces: np.ndarray            # (sum N, 3) predicted
    forces_ref: np.ndarray        # (sum N, 3) reference (NaN where missing)


class ForwardPredictor:
    """`predict(batch)` for a model known only by its edges -> atomic energies function
    (an exported TorchScript file), so exported files are evaluated exactly as LAMMPS runs them."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.atomic_numbers, self.cutoff = loaded.atomic_numbers, loaded.cutoff

    def predict(self, batch, forces: bool = True) -> Dict[str, torch.Tensor]:
        vectors = batch.edge_vectors.to(self.loaded.dtype).requires_grad_(forces)
        n = batch.species.shape[0]
        atomic = self.loaded.atomic_energies(vectors, batch.centers, batch.neighbors, batch.species, n)
        energy = torch.zeros(batch.n_structures, dtype=torch.float64).index_add(0, batch.atom_structure, atomic.double())
        out = {"energy": energy}
        if forces:
            (grad,) = torch.autograd.grad(atomic.sum(), vectors)
            out["forces"] = forces_from_edge_gradients(grad, batch.centers, batch.neighbors, n)
        return out


def predict_graphs(model, graphs: Sequence[StructureGraph], batch_size: int = 64,
                   forces: bool = True, device="cpu") -> Predictions:
    energies, forces_pred = [], []
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start:start + batch_size]).to(device)
        out = model.predict(batch, forces=forces)
        energies.append(out["energy"].detach().cpu().numpy())
        if forces:
            forces_pred.append(out["forces"].detach().double().cpu().numpy())
    nan3 = lambda g: np.full((g.n_atoms, 3), np.nan)
    return Predictions(
        energy=np.concatenate(energies) if energies else np.zeros(0),
        energy_ref=np.array([np.nan if g.energy is None else g.energy for g in graphs]),
        n_atoms=np.array([g.n_atoms for g in graphs]),
        forces=np.concatenate(forces_pred) if forces_pred else np.zeros((0, 3)),
        forces_ref=np.concatenate([g.forces.numpy() if g.forces is not None else nan3(g) for g in graphs])
        if graphs else np.zeros((0, 3)),
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
    return out


def evaluate(model, graphs, batch_size=64, device="cpu", forces=True):
    preds = predict_graphs(model, graphs, batch_size, forces=forces, device=device)
    return error_metrics(preds), preds


def format_table(metrics_by_set: Dict[str, Dict[str, float]]) -> str:
    """A fixed-width table in meV units, one row per data set."""
    w = max([12] + [len(k) + 2 for k in metrics_by_set])
    head = f"{'set':<{w}}{'N':>6}{'E MAE':>11}{'E RMSE':>11}{'E/atom MAE':>13}{'E/atom RMSE':>13}{'F MAE':>11}{'F RMSE':>11}"
    units = f"{'':<{w}}{'':>6}{'meV':>11}{'meV':>11}{'meV/atom':>13}{'meV/atom':>13}{'meV/A':>11}{'meV/A':>11}"
    rows = [head, units]
    for name, m in metrics_by_set.items():
        v = lambda k: 1000.0 * m[k]
        rows.append(f"{name:<{w}}{m['n_structures']:>6}{v('energy_mae'):>11.3f}{v('energy_rmse'):>11.3f}"
                    f"{v('energy_per_atom_mae'):>13.3f}{v('energy_per_atom_rmse'):>13.3f}"
                    f"{v('forces_mae'):>11.2f}{v('forces_rmse'):>11.2f}")
    return "\n".join(rows)


def write_json(path, payload) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=float)
