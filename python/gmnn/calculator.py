"""ASE calculator for GM-NN models: energy, per-atom energies, forces and (periodic cells)
stress, by the same edges -> atomic energies core that LAMMPS runs (inference.predict)."""
import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .graph import GraphBatch, species_lookup
from .inference import predict
from .loading import as_model
from .neighbors import neighbor_list

# Atoms (centres) per forward/backward pass. The same default as pair_style gmnn and
# gmnn._native (cpp/core/gmnn_model.h, kDefaultAtomsPerPass).
ATOMS_PER_PASS = 2048


class GMNNCalculator(Calculator):
    """`model`: a checkpoint path (.ckpt), an exported TorchScript file (.pt), the name of a shipped
    pre-trained model (gmnn.list_pretrained()) or a model object (a GMNN, or what loading.load returns).

    `atoms_per_pass`: atoms are evaluated in blocks of this many centres (the option of the same
    name in `pair_style gmnn`): memory stays bounded for 10^5-atom structures, and results do not
    depend on it, since an atom's energy depends only on its own edges.

    `uncertainty`: with a calibrated model (uncertainty.py) every calculation also sets
    results["energy_uncertainty"] (eV) and results["forces_uncertainty"] (eV/A, one per atom).
    None (default): when the model has one; True: required (an error if the model has none);
    False: never (saves the d x d product per atom)."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "energy_uncertainty",
                              "forces_uncertainty"]

    def __init__(self, model, device: str = "cpu", atoms_per_pass: int = ATOMS_PER_PASS, uncertainty=None, **kwargs):
        super().__init__(**kwargs)
        if atoms_per_pass < 1:
            raise ValueError(f"atoms_per_pass must be >= 1, got {atoms_per_pass}")
        self.atoms_per_pass = int(atoms_per_pass)
        self.device = torch.device(device)
        self.model = as_model(model).to(self.device).eval()
        self._lookup = species_lookup(self.model.atomic_numbers)
        if uncertainty and not self.model.has_uncertainty:
            from .loading import no_uncertainty_message
            raise ValueError(no_uncertainty_message(getattr(self.model, "format_version", 3)))
        self.uncertainty = self.model.has_uncertainty if uncertainty is None else bool(uncertainty)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        species = self._lookup[atoms.numbers]
        if np.any(species < 0):
            from ase.data import chemical_symbols
            known = " ".join(chemical_symbols[z] for z in self.model.atomic_numbers)
            raise ValueError(f"elements {sorted(set(atoms.get_chemical_symbols()))} not all known to the model ({known})")
        nl = neighbor_list(atoms.positions, self.model.cutoff, atoms.cell.array, atoms.pbc)
        n, periodic = len(atoms), bool(atoms.pbc.all())
        batch = GraphBatch(species=torch.from_numpy(species), centers=torch.from_numpy(nl.centers),
                           neighbors=torch.from_numpy(nl.neighbors), edge_vectors=torch.from_numpy(nl.vectors),
                           atom_structure=torch.zeros(n, dtype=torch.long), n_atoms=torch.tensor([n]),
                           volume=torch.tensor([atoms.get_volume() if periodic else 0.0], dtype=torch.float64),
                           energy=None, forces=None, force_mask=None).to(self.device)
        # forces summed in float64, as pair_style gmnn sums them
        out = predict(self.model, batch, forces=True, stress=periodic, atoms_per_pass=self.atoms_per_pass,
                      force_dtype=torch.float64, uncertainty=self.uncertainty)
        energies = out["atomic_energies"].detach().cpu().numpy()
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = out["forces"].detach().cpu().numpy()
        if self.uncertainty:
            self.results["energy_uncertainty"] = float(out["energy_uncertainty"][0].detach())
            self.results["forces_uncertainty"] = out["forces_uncertainty"].detach().cpu().numpy()
        if periodic:
            self.results["stress"] = out["stress"][0].detach().cpu().numpy().flat[[0, 4, 8, 5, 2, 1]]
