"""ASE calculator for GM-NN models: energy, per-atom energies, forces and (periodic cells)
stress, by the same edges -> atomic energies core that LAMMPS runs."""
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .export import as_loaded_model
from .graph import species_lookup
from .model import forces_from_edge_gradients
from .neighbors import neighbor_list


class GMNNCalculator(Calculator):
    """`model`: a checkpoint path (.ckpt), an exported TorchScript file (.pt) or a GMNN object."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
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
        dev, dtype = self.device, self.model.dtype
        vectors = torch.tensor(nl.vectors, dtype=dtype, device=dev, requires_grad=True)
        centers = torch.from_numpy(nl.centers).to(dev)
        neighbors = torch.from_numpy(nl.neighbors).to(dev)
        n = len(atoms)
        atomic = self.model.atomic_energies(vectors, centers, neighbors, torch.from_numpy(species).to(dev), n)
        (grad,) = torch.autograd.grad(atomic.sum(), vectors)
        forces = forces_from_edge_gradients(grad, centers, neighbors, n)
        energies = atomic.detach().double().cpu().numpy()
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces.double().cpu().numpy()
        if atoms.pbc.all():
            dE_dstrain = (grad.double().T @ vectors.detach().double()).cpu().numpy()  # sum_e g_a r_b
            stress = 0.5 * (dE_dstrain + dE_dstrain.T) / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
