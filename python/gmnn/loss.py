"""The training loss, per batch (what the optimiser sees) and over a whole set (what early
stopping and cross-validation watch): the same two terms."""
from typing import Dict

import numpy as np
import torch

from .evaluation import Predictions


def loss_terms(out: Dict[str, torch.Tensor], batch, energy_weight: float, force_weight: float) -> torch.Tensor:
    """w_E * mean_b (E_b - E_ref)^2 / N_b  +  w_F * mean over atoms and components |F - F_ref|^2."""
    loss = torch.zeros((), dtype=torch.float64)
    if energy_weight > 0 and batch.energy is not None:
        loss = loss + energy_weight * ((out["energy"] - batch.energy) ** 2 / batch.n_atoms).mean()
    if force_weight > 0 and batch.forces is not None:
        mask = batch.force_mask
        diff = out["forces"][mask].double() - batch.forces[mask]
        loss = loss + force_weight * (diff**2).mean()
    return loss


def validation_loss(p: Predictions, energy_weight: float, force_weight: float) -> float:
    """The training loss evaluated on a whole set (what early stopping watches)."""
    total = 0.0
    has_e = np.isfinite(p.energy_ref)
    if energy_weight > 0 and has_e.any():
        total += energy_weight * float(np.mean((p.energy - p.energy_ref)[has_e] ** 2 / p.n_atoms[has_e]))
    has_f = np.all(np.isfinite(p.forces_ref), axis=1)
    if force_weight > 0 and has_f.any():
        total += force_weight * float(np.mean((p.forces - p.forces_ref)[has_f] ** 2))
    return total
