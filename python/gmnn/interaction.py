"""Intermolecular accuracy on its own: the interaction energy of a cluster of whole molecules,
E(cluster) - sum over its molecules of E(molecule alone), and the interaction forces,
F(atom in the cluster) - F(atom in its molecule alone).

Total energy and force errors of a cluster mix two things: how well a model knows each molecule
and how well it knows molecules meeting. A model fine-tuned from PBE to CCSD(T) monomers changes
the first on purpose (its cluster forces move away from PBE's by the PBE/CCSD(T) difference of the
molecules themselves); whether it kept what PBE clusters taught about the second shows in the
interaction quantities, compared with the same at PBE (each molecule of the cluster labelled
alone, `fragments`)."""
from typing import List, NamedTuple, Sequence

import numpy as np
from ase import Atoms

from .clusters import molecules


class Interaction(NamedTuple):
    energy: float        # E(cluster) - sum E(molecule alone), eV
    forces: np.ndarray   # (n_atoms, 3) F(cluster) - F(molecule alone), eV/Å


def fragments(cluster: Atoms) -> List[Atoms]:
    """The molecules of a non-periodic cluster, each alone (same positions), with
    info["atoms"] = the indices of its atoms in the cluster, as a comma-separated string
    (ASE's extended XYZ reader gives it back as an integer array; `interaction` takes both)."""
    if np.any(cluster.pbc):
        raise ValueError("fragments: the cluster must be non-periodic (an isolated cluster of whole molecules)")
    parts = []
    for atoms in molecules(cluster):
        part = Atoms(numbers=cluster.numbers[atoms], positions=cluster.positions[atoms])
        part.info["atoms"] = ",".join(str(k) for k in atoms)
        parts.append(part)
    return parts


def _indices(value) -> np.ndarray:
    """info["atoms"] as written ("0,1,2") or as ASE's extended XYZ reader returns it (an array)."""
    if isinstance(value, str):
        return np.array([int(k) for k in value.split(",")])
    return np.atleast_1d(np.asarray(value, dtype=int))


def interaction(energy: float, forces: np.ndarray, parts: Sequence[Atoms], part_energies: Sequence[float],
                part_forces: Sequence[np.ndarray]) -> Interaction:
    """The interaction energy and forces of a cluster (its `energy` and `forces`) from those of its
    `parts` (fragments(cluster), in any order, each with info["atoms"])."""
    forces = np.array(forces, dtype=float)
    seen = np.zeros(len(forces), dtype=bool)
    for part, f in zip(parts, part_forces):
        atoms = _indices(part.info["atoms"])
        if np.any(seen[atoms]) or len(atoms) != len(f):
            raise ValueError("interaction: the fragments overlap or do not match their atoms")
        seen[atoms] = True
        forces[atoms] -= f
    if not seen.all():
        raise ValueError(f"interaction: {int((~seen).sum())} atoms of the cluster are in no fragment")
    return Interaction(float(energy - np.sum(part_energies)), forces)
