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

from .data import DataError
from .graph import StructureGraph


def element_counts(graphs: Sequence[StructureGraph], n_elements: int) -> np.ndarray:
    return np.stack([np.bincount(g.species.numpy(), minlength=n_elements) for g in graphs]).astype(np.float64)


def fit_shift(graphs: Sequence[StructureGraph], n_elements: int, baseline=None) -> np.ndarray:
    """Least-squares shifts of (E_ref - baseline) on element counts; baseline: per-structure
    energies the model already predicts (None: zero)."""
    labelled = [k for k, g in enumerate(graphs) if g.energy is not None]
    if not labelled:
        raise DataError("cannot fit the per-element energy shifts: no training structure has an energy label "
                        "(energy_key: none, or no energies in the data); gmnn trains on energies, or energies and "
                        "forces")
    counts = element_counts([graphs[k] for k in labelled], n_elements)
    energies = np.array([graphs[k].energy for k in labelled])
    if baseline is not None:
        energies = energies - np.asarray(baseline)[labelled]
    shift, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return shift


@torch.no_grad()
def network_energies(model, graphs: Sequence[StructureGraph], batch_size: int = 64) -> np.ndarray:
    """Per-structure sum of sigma_Z * E_i^NN: the model's energy (inference.predict) without its
    shifts."""
    from .evaluation import predict_graphs
    shift = model.scale_shift.shift.detach().double().cpu().numpy()
    energies = predict_graphs(model, graphs, batch_size, forces=False).energy
    return energies - element_counts(graphs, len(shift)) @ shift


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
    """Set model.scale_shift from the data.

    scale=True (a new model): shifts from the raw energies, then the scale.
    scale=False (a trained model, new level of theory): only the shifts, fitted to what the
    network does not already explain, E_ref - sum sigma E^NN, so the trained network's energy
    differences are kept and only the energy zero moves."""
    n_el = len(model.atomic_numbers)
    shift = fit_shift(graphs, n_el, baseline=None if scale else network_energies(model, graphs))
    present = element_counts(graphs, n_el).sum(axis=0) > 0
    ss = model.scale_shift
    new_shift = ss.shift.detach().double().cpu().numpy().copy()
    new_shift[present] = shift[present]  # elements absent from the data keep their value
    ss.shift.copy_(torch.from_numpy(new_shift))
    if scale:
        ss.scale.fill_(fit_scale(graphs, shift))
