"""Reference data: `read_structures` reads any ASE-readable file (extxyz first), MD17/rMD17
.npz and ANI-style HDF5 (the readers by format are in readers.py), converts everything to eV,
Angstrom and eV/Angstrom, and checks it here (`check_structure`; energies in other units:
`energy_outliers`): a bad value raises `DataError` naming the file, the structure and the field.

Unit conventions when the user does not give units:
- ASE formats: eV and Angstrom (the extxyz/ASE convention).
- .npz (MD17, rMD17): kcal/mol and Angstrom (the sgdml/rMD17 convention).
- ANI HDF5: Hartree and Angstrom, forces Hartree/Angstrom (the ANI-1x/1ccx release).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .neighbors import cell_problem
from .units import energy_factor, force_factor, length_factor

AUTO = "auto"


class DataError(ValueError):
    """Bad reference data; the message names file, structure and field."""


class UnknownElementError(DataError):
    """A structure has an element the model does not know (fine-tuning can add it)."""


@dataclass
class Structure:
    numbers: np.ndarray                 # (N,) atomic numbers
    positions: np.ndarray               # (N, 3) Angstrom
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: Optional[float] = None      # eV
    forces: Optional[np.ndarray] = None  # (N, 3) eV/Angstrom
    source: str = ""                    # "file[index]", for messages
    info: dict = field(default_factory=dict)  # the file's own metadata of the structure (extxyz comment keys)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def to_atoms(self):
        from ase import Atoms
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    def to_labelled_atoms(self):
        """ASE Atoms carrying this structure's energy and forces (where it has them)."""
        from ase.calculators.singlepoint import SinglePointCalculator
        atoms = self.to_atoms()
        results = {k: v for k, v in (("energy", self.energy), ("forces", self.forces)) if v is not None}
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    @classmethod
    def from_atoms(cls, atoms, energy=None, forces=None, source=""):
        return cls(np.asarray(atoms.numbers, dtype=np.int64), np.asarray(atoms.positions, dtype=np.float64),
                   np.asarray(atoms.cell.array, dtype=np.float64), np.asarray(atoms.pbc, dtype=bool),
                   energy, forces, source, dict(atoms.info))


def read_structures(path, *, energy_key: str = AUTO, forces_key: str = AUTO,
                    energy_unit: Optional[str] = None, force_unit: Optional[str] = None,
                    length_unit: Optional[str] = None, level: Optional[str] = None,
                    index: str = ":") -> List[Structure]:
    """Read labelled structures from `path`, dispatching on its suffix.

    energy_key / forces_key: property names (extxyz info/arrays keys, npz keys); "auto"
    detects the standard names and logs which one it used; "none" ignores that label.
    level: level of theory for ANI HDF5 files (e.g. "wb97x_dz", "ccsd(t)_cbs"); required there.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    selection = parse_index(index, where=str(path))
    from .readers import read_ani_h5, read_ase, read_npz
    suffix = path.suffix.lower()
    if suffix == ".npz":
        everything = read_npz(path, energy_key, forces_key,
                               *_factors(path, energy_unit or "kcal/mol", force_unit, length_unit))
        total, structures = len(everything), everything[selection]
    elif suffix in (".h5", ".hdf5"):
        everything = read_ani_h5(path, level, *_factors(path, energy_unit or "Hartree", force_unit, length_unit))
        total, structures = len(everything), everything[selection]
    else:  # ASE parses only the selected frames
        structures, total = read_ase(path, energy_key, forces_key,
                                      *_factors(path, energy_unit or "eV", force_unit, length_unit), selection)
    if not structures:
        if total == 0:
            raise DataError(f"{path}: no structures in the file")
        raise DataError(f"{path}: index {index!r} selects no structures (the file has {total})")
    for s in structures:
        check_structure(s)
    return structures


def write_structures(structures: Sequence[Structure], path) -> Path:
    """extxyz (eV, Angstrom) of `structures` with their labels; read_structures reads it back."""
    import ase.io
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, [s.to_labelled_atoms() for s in structures], format="extxyz")
    return path


def _factors(path, energy_unit, force_unit, length_unit):
    """(energy, force, length) factors into eV, eV/Angstrom, Angstrom; a DataError for an
    unknown unit naming the file and the known units."""
    length_unit = length_unit or "Angstrom"
    try:
        return (energy_factor(energy_unit), force_factor(force_unit or f"{energy_unit}/{length_unit}"),
                length_factor(length_unit))
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def parse_index(index: str, where: str = "") -> slice:
    """ASE-style frame selection "start:stop[:step]" (or a single integer) as a slice."""
    parts = str(index).split(":")
    problem = "expected 'start:stop[:step]' or a frame number"
    try:
        if len(parts) == 1:
            k = int(parts[0])
            return slice(k, k + 1 if k != -1 else None)
        if len(parts) <= 3:
            selection = slice(*(int(p) if p.strip() else None for p in parts))
            if selection.step != 0:
                return selection
            problem = "the step must not be 0"
    except (TypeError, ValueError):
        pass
    raise DataError(f"{where + ': ' if where else ''}bad index {index!r}: {problem}")


def check_structure(s: Structure) -> None:
    where = s.source
    n = len(s.numbers)
    if n == 0:
        raise DataError(f"{where}: field 'positions': structure has no atoms")
    if s.positions.shape != (n, 3):
        raise DataError(f"{where}: field 'positions': shape {s.positions.shape}, expected ({n}, 3)")
    if not np.all(np.isfinite(s.positions)):
        raise DataError(f"{where}: field 'positions': contains NaN or inf")
    if np.any(s.numbers < 1) or np.any(s.numbers > 118):
        raise DataError(f"{where}: field 'numbers': unknown element(s) {sorted(set(s.numbers.tolist()))}")
    if s.energy is not None and not np.isfinite(s.energy):
        raise DataError(f"{where}: field 'energy': {s.energy}")
    if s.forces is not None:
        if s.forces.shape != (n, 3):
            raise DataError(f"{where}: field 'forces': shape {s.forces.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(s.forces)):
            raise DataError(f"{where}: field 'forces': contains NaN or inf")
    problem = cell_problem(s.cell, s.pbc)
    if problem:
        raise DataError(f"{where}: field 'cell': {problem}")


def energy_outliers(structures: Sequence[Structure], limit: float = 10.0,
                    reference: Sequence[Structure] = ()) -> List[tuple]:
    """Structures whose energy per atom lies more than `limit` eV/atom from a per-element linear
    fit of all energies: (source, deviation in eV/atom), largest first.

    Real potential-energy surfaces stay far inside 10 eV/atom of such a fit (rMD17 ethanol:
    0.07, GAP carbon: 0.56), while frames in other units (Hartree, kcal/mol, kJ/mol) or from
    another code's energy zero land hundreds of eV/atom away: the signature of a mixed file.
    With `reference` (e.g. the training set when checking a test set), the fit covers both, the
    deviations are measured from the reference's median, and only `structures` are reported."""
    reference = [s for s in reference if s.energy is not None]
    labelled = reference + [s for s in structures if s.energy is not None]
    if len(labelled) < 2 or len(labelled) == len(reference):
        return []
    elements = sorted({int(z) for s in labelled for z in s.numbers})
    counts = np.array([[np.count_nonzero(s.numbers == z) for z in elements] for s in labelled], dtype=np.float64)
    energies = np.array([s.energy for s in labelled])
    shifts, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    per_atom = (energies - counts @ shifts) / counts.sum(axis=1)
    deviation = np.abs(per_atom - np.median(per_atom[:len(reference)] if reference else per_atom))
    order = [k for k in np.argsort(-deviation) if k >= len(reference)]
    return [(labelled[k].source, float(deviation[k])) for k in order if deviation[k] > limit]


def check_energy_outliers(structures: Sequence[Structure], limit: Optional[float], reference: Sequence[Structure] = (),
                          remedy: str = "data.energy_unit applies to every file (train, valid and test); fix the "
                                        "data, or set data.energy_outlier_limit: null to go on anyway") -> None:
    """A DataError naming the structures `energy_outliers` finds (none if `limit` is None)."""
    outliers = [] if limit is None else energy_outliers(structures, limit, reference)
    if outliers:
        listed = ", ".join(f"{src} ({dev:.1f} eV/atom)" for src, dev in outliers[:5])
        raise DataError(f"{len(outliers)} structure(s) lie more than {limit} eV/atom from a per-element fit of all "
                        f"energies: {listed}. Mixed energy units or levels of theory? {remedy}")


def split_indices(n: int, n_train: int, n_valid: int, seed: int = 0, shuffle: bool = True):
    """Deterministic train/validation split of range(n)."""
    if n_train + n_valid > n:
        raise DataError(f"n_train + n_valid = {n_train + n_valid} exceeds the {n} structures available")
    if n_train < 1:
        raise DataError(f"n_valid = {n_valid} leaves no structures to train on (the selection has {n})")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    return order[:n_train].tolist(), order[n_train:n_train + n_valid].tolist()
