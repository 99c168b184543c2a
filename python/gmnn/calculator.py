"""ASE calculator for GM-NN models: energy, per-atom energies, forces and (periodic cells)
stress, by the same edges -> atomic energies core that LAMMPS runs."""
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .export import as_loaded_model
from .graph import species_lookup
from .model import forces_from_edge_gradients
from .neighbors import neighbor_list

# Atoms (centres) per forward/backward pass. The same default as pair_style gmnn and
# gmnn._native (cpp/core/gmnn_model.h, kDefaultAtomsPerPass).
ATOMS_PER_PASS = 2048


class GMNNCalculator(Calculator):
    """`model`: a checkpoint path (.ckpt), an exported TorchScript file (.pt) or a GMNN object.

    `atoms_per_pass`: atoms are evaluated in blocks of this many centres (the option of the same
    name in `pair_style gmnn`): memory stays bounded for 10^5-atom structures, and results do not
    depend on it, since an atom's energy depends only on its own edges."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device: str = "cpu", atoms_per_pass: int = ATOMS_PER_PASS, **kwargs):
        super().__init__(**kwargs)
        if atoms_per_pass < 1:
            raise ValueError(f"atoms_per_pass must be >= 1, got {atoms_per_pass}")
        self.atoms_per_pass = int(atoms_per_pass)
        self.model = as_loaded_model(model)
        self.device = torch.device(device)
        if isinstance(self.model.atomic_energies, torch.nn.Module):
            self.model.atomic_energies.to(self.device).eval()
        self._lookup = species_lookup(self.model.atomic_numbers)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        species = self._lookup[atoms.numbers]
        if np.any(species < 0):
            from ase.data import chemical_symbols
            known = " ".join(chemical_symbols[z] for z in self.model.atomic_numbers)
            raise ValueError(f"elements {sorted(set(atoms.get_chemical_symbols()))} not all known to the model ({known})")
        nl = neighbor_list(atoms.positions, self.model.cutoff, atoms.cell.array, atoms.pbc)
        n = len(atoms)
        energies = np.zeros(n)
        forces = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        dE_dstrain = np.zeros((3, 3))
        # edges come sorted by centre, so each block of centres owns one contiguous edge range
        bounds = np.searchsorted(nl.centers, np.arange(0, n + self.atoms_per_pass, self.atoms_per_pass))
        for block, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            first = block * self.atoms_per_pass
            last = min(first + self.atoms_per_pass, n)
            energies[first:last], grad, vectors = self._block(nl, start, stop, first, last, species)
            centers = torch.from_numpy(nl.centers[start:stop]).to(self.device)
            neighbors = torch.from_numpy(nl.neighbors[start:stop]).to(self.device)
            forces += forces_from_edge_gradients(grad.double(), centers, neighbors, n)
            dE_dstrain += (grad.double().T @ vectors.double()).cpu().numpy()  # sum_e g_a r_b
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces.cpu().numpy()
        if atoms.pbc.all():
            stress = 0.5 * (dE_dstrain + dE_dstrain.T) / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]

    def _block(self, nl, start: int, stop: int, first: int, last: int, species: np.ndarray):
        """Atomic energies of atoms first..last-1 and the energy gradient w.r.t. their edges.

        The model takes centres as atoms 0..m-1 followed by other atoms (as LAMMPS ghosts): the
        block's neighbours outside it are renumbered after the block."""
        dev, dtype = self.device, self.model.dtype
        m = last - first
        neighbors = nl.neighbors[start:stop]
        outside = np.unique(neighbors[(neighbors < first) | (neighbors >= last)])
        local = np.empty(len(species), dtype=np.int64)
        local[first:last] = np.arange(m)
        local[outside] = m + np.arange(len(outside))
        block_species = np.concatenate([species[first:last], species[outside]])
        vectors = torch.tensor(nl.vectors[start:stop], dtype=dtype, device=dev, requires_grad=True)
        atomic = self.model.atomic_energies(vectors, torch.from_numpy(nl.centers[start:stop] - first).to(dev),
                                            torch.from_numpy(local[neighbors]).to(dev),
                                            torch.from_numpy(block_species).to(dev), m)
        (grad,) = torch.autograd.grad(atomic.sum(), vectors)
        return atomic.detach().double().cpu().numpy(), grad, vectors.detach()
