"""Fitting the per-element energy shift mu_Z and scale sigma_Z from data (spec 1.4).

mu: linear least squares of total energies on element counts (minimum-norm solution, so a
data set where all structures share one composition still gets a well-defined answer).
sigma: RMS of the reference force components when forces are present (the network's output
is differentiated into forces, so this sets their natural scale); otherwise the RMS
per-atom residual sqrt(mean((E - sum mu)^2 / N)), i.e. atomic energies treated as
independent with variance sigma^2. The same sigma is used for every element.
"""
from typing import Sequence

import numpy as np
import torch

from .graph import StructureGraph


def element_counts(graphs: Sequence[StructureGraph], n_elements: int) -> np.ndarray:
    return np.stack([np.bincount(g.species.numpy(), minlength=n_elements) for g in graphs]).astype(np.float64)


def fit_shift(graphs: Sequence[StructureGraph], n_elements: int) -> np.ndarray:
    labelled = [g for g in graphs if g.energy is not None]
    if not labelled:
        raise ValueError("cannot fit energy shifts: no structure has an energy label")
    counts = element_counts(labelled, n_elements)
    energies = np.array([g.energy for g in labelled])
    shift, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return shift


def fit_scale(graphs: Sequence[StructureGraph], shift: np.ndarray) -> float:
    forces = [g.forces.numpy().ravel() for g in graphs if g.forces is not None]
    if forces:
        scale = float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))
    else:
        labelled = [g for g in graphs if g.energy is not None]
        counts = element_counts(labelled, len(shift))
        residual = np.array([g.energy for g in labelled]) - counts @ shift
        n_atoms = counts.sum(axis=1)
        scale = float(np.sqrt(np.mean(residual**2 / n_atoms)))
    return scale if scale > 1e-6 else 1.0


@torch.no_grad()
def fit_scale_shift(model, graphs: Sequence[StructureGraph], scale: bool = True) -> None:
    """Set model.scale_shift from the data; `scale=False` re-fits only the shifts
    (what fine-tuning does when the level of theory changes)."""
    n_el = len(model.atomic_numbers)
    shift = fit_shift(graphs, n_el)
    present = element_counts(graphs, n_el).sum(axis=0) > 0
    ss = model.scale_shift
    new_shift = ss.shift.detach().double().cpu().numpy().copy()
    new_shift[present] = shift[present]  # elements absent from the data keep their value
    ss.shift.copy_(torch.from_numpy(new_shift))
    if scale:
        ss.scale.fill_(fit_scale(graphs, shift))
