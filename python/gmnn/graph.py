"""Structures as graphs: the neighbour list of each training structure is computed once and
cached as edge vectors; batches are padding-free concatenations of these graphs."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from .data import DataError, Structure, UnknownElementError
from .neighbors import neighbor_list


@dataclass
class StructureGraph:
    species: torch.Tensor        # (N,) model element index
    centers: torch.Tensor        # (E,)
    neighbors: torch.Tensor      # (E,)
    edge_vectors: torch.Tensor   # (E, 3) float64, x_j - x_i (+ periodic shift)
    energy: Optional[float]      # eV
    forces: Optional[torch.Tensor]  # (N, 3) float64
    volume: float                # Angstrom^3; 0 for non-periodic structures

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])


@dataclass
class GraphBatch:
    species: torch.Tensor
    centers: torch.Tensor
    neighbors: torch.Tensor
    edge_vectors: torch.Tensor
    atom_structure: torch.Tensor   # (N,) index of the structure each atom belongs to
    n_atoms: torch.Tensor          # (B,)
    volume: torch.Tensor           # (B,)
    energy: Optional[torch.Tensor]  # (B,) float64, or None if any structure lacks it
    forces: Optional[torch.Tensor]  # (N, 3) float64 (zeros where missing)
    force_mask: Optional[torch.Tensor]  # (N,) bool: atom has a reference force

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def to(self, device) -> "GraphBatch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return GraphBatch(**moved)


def species_lookup(model_numbers: Sequence[int]) -> np.ndarray:
    table = np.full(119, -1, dtype=np.int64)
    table[np.asarray(model_numbers, dtype=np.int64)] = np.arange(len(model_numbers))
    return table


def structure_graph(structure: Structure, model_numbers: Sequence[int], cutoff: float,
                    lookup: Optional[np.ndarray] = None) -> StructureGraph:
    lookup = species_lookup(model_numbers) if lookup is None else lookup
    species = lookup[structure.numbers]
    if np.any(species < 0):
        from ase.data import chemical_symbols
        unknown = sorted({chemical_symbols[z] for z in structure.numbers[species < 0]})
        known = " ".join(chemical_symbols[z] for z in model_numbers)
        raise UnknownElementError(f"{structure.source}: field 'numbers': element(s) {unknown} unknown to the model "
                                  f"(elements: {known})")
    try:
        nl = neighbor_list(structure.positions, cutoff, structure.cell, structure.pbc)
    except ValueError as exc:  # coincident atoms, a bad cell: name the structure
        raise DataError(f"{structure.source}: {exc}") from None
    volume = abs(float(np.linalg.det(structure.cell))) if np.all(structure.pbc) else 0.0
    return StructureGraph(
        species=torch.from_numpy(species),
        centers=torch.from_numpy(nl.centers),
        neighbors=torch.from_numpy(nl.neighbors),
        edge_vectors=torch.from_numpy(nl.vectors),
        energy=structure.energy,
        forces=None if structure.forces is None else torch.from_numpy(np.asarray(structure.forces, dtype=np.float64)),
        volume=volume,
    )


def build_graphs(structures: Sequence[Structure], model_numbers: Sequence[int], cutoff: float,
                 progress: bool = False) -> List[StructureGraph]:
    lookup = species_lookup(model_numbers)
    items = structures
    if progress and len(structures) > 200:
        from tqdm import tqdm
        items = tqdm(structures, desc="neighbour lists", unit="struct", leave=False)
    return [structure_graph(s, model_numbers, cutoff, lookup) for s in items]


def collate(graphs: Sequence[StructureGraph]) -> GraphBatch:
    n_atoms = torch.tensor([g.n_atoms for g in graphs], dtype=torch.long)
    offsets = torch.cumsum(n_atoms, 0) - n_atoms
    centers = torch.cat([g.centers + o for g, o in zip(graphs, offsets.tolist())])
    neighbors = torch.cat([g.neighbors + o for g, o in zip(graphs, offsets.tolist())])
    has_energy = all(g.energy is not None for g in graphs)
    force_mask = torch.cat([torch.full((g.n_atoms,), g.forces is not None) for g in graphs])
    forces = None
    if force_mask.any():
        forces = torch.cat([g.forces if g.forces is not None else torch.zeros(g.n_atoms, 3, dtype=torch.float64)
                            for g in graphs])
    return GraphBatch(
        species=torch.cat([g.species for g in graphs]),
        centers=centers,
        neighbors=neighbors,
        edge_vectors=torch.cat([g.edge_vectors for g in graphs]),
        atom_structure=torch.repeat_interleave(torch.arange(len(graphs)), n_atoms),
        n_atoms=n_atoms,
        volume=torch.tensor([g.volume for g in graphs], dtype=torch.float64),
        energy=torch.tensor([g.energy for g in graphs], dtype=torch.float64) if has_energy else None,
        forces=forces,
        force_mask=force_mask if forces is not None else None,
    )
