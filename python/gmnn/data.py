"""Reading reference data: any ASE-readable file (extxyz first), MD17/rMD17 .npz and ANI-style
HDF5. Everything is converted to eV, Angstrom and eV/Angstrom on reading, and checked: a bad
value raises `DataError` naming the file, the structure and the field.

Unit conventions when the user does not give units:
- ASE formats: eV and Angstrom (the extxyz/ASE convention).
- .npz (MD17, rMD17): kcal/mol and Angstrom (the sgdml/rMD17 convention).
- ANI HDF5: Hartree and Angstrom, forces Hartree/Angstrom (the ANI-1x/1ccx release).
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .neighbors import cell_problem
from .units import energy_factor, force_factor, length_factor

log = logging.getLogger(__name__)

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

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def to_atoms(self):
        from ase import Atoms
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    @classmethod
    def from_atoms(cls, atoms, energy=None, forces=None, source=""):
        return cls(np.asarray(atoms.numbers, dtype=np.int64), np.asarray(atoms.positions, dtype=np.float64),
                   np.asarray(atoms.cell.array, dtype=np.float64), np.asarray(atoms.pbc, dtype=bool),
                   energy, forces, source)


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
    suffix = path.suffix.lower()
    if suffix == ".npz":
        everything = _read_npz(path, energy_key, forces_key,
                               *_factors(path, energy_unit or "kcal/mol", force_unit, length_unit))
        total, structures = len(everything), everything[selection]
    elif suffix in (".h5", ".hdf5"):
        everything = _read_ani_h5(path, level, *_factors(path, energy_unit or "Hartree", force_unit, length_unit))
        total, structures = len(everything), everything[selection]
    else:  # ASE parses only the selected frames
        structures, total = _read_ase(path, energy_key, forces_key,
                                      *_factors(path, energy_unit or "eV", force_unit, length_unit), selection)
    if not structures:
        if total == 0:
            raise DataError(f"{path}: no structures in the file")
        raise DataError(f"{path}: index {index!r} selects no structures (the file has {total})")
    for s in structures:
        check_structure(s)
    return structures


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


# ---- ASE-readable files ---------------------------------------------------------------

def _read_ase(path, energy_key, forces_key, e_factor, f_factor, l_factor, selection):
    """(structures of the selection, number of frames in the file or None where not counted).
    Structures are named by their frame number in the file. Labels are decided per
    frame: a label that some frames have must be in every frame (the key is never chosen by
    frame 0 alone, which used to drop every frame's forces when only frame 0 lacked them)."""
    import ase.io

    def read(selected):
        try:
            frames = ase.io.read(path, index=selected)
        except Exception as exc:  # ASE raises many types for malformed files
            raise DataError(f"{path}: cannot be read by ASE: {exc}") from exc
        return frames if isinstance(frames, list) else [frames]
    frames = read(selection)
    start, step = selection.start, selection.step or 1
    if frames and step > 0 and (start is None or start >= 0):  # frame numbers without counting the file
        total, numbers = None, [(start or 0) + k * step for k in range(len(frames))]
    else:
        total = len(read(slice(None)))
        numbers = list(range(*selection.indices(total)))
    names = {kind: _choose_key(path, frames, key, kind) for kind, key in (("energy", energy_key),
                                                                          ("forces", forces_key))}
    out = []
    for k, atoms in zip(numbers, frames):
        where = f"{path}[{k}]"
        energy = _get_property(atoms, names["energy"], where, "energy", frames)
        forces = _get_property(atoms, names["forces"], where, "forces", frames)
        s = Structure.from_atoms(atoms, source=where)
        s.positions = s.positions * l_factor
        s.cell = s.cell * l_factor
        s.energy = None if energy is None else float(energy) * e_factor
        s.forces = None if forces is None else np.asarray(forces, dtype=np.float64) * f_factor
        out.append(s)
    return out, total


_STANDARD_NAMES = {"energy": ("energy", "Energy", "total_energy"), "forces": ("forces", "force", "Forces")}
_KEY_OPTION = {"energy": "energy_key", "forces": "forces_key"}


def _available(atoms, kind):
    calc_results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    names = set(calc_results)
    names |= set(atoms.info) if kind == "energy" else set(atoms.arrays)
    return names


def _choose_key(path, frames, key, kind):
    """The property name of `kind` in these frames (all of them, not the first one)."""
    if key is None or str(key).lower() == "none":
        return None
    available = set().union(*(_available(atoms, kind) for atoms in frames))
    if key != AUTO:
        if key not in available:
            raise DataError(f"{path}: field {key!r} not found; {kind} candidates: {sorted(available)}")
        return key
    found = [n for n in _STANDARD_NAMES[kind] if n in available]
    if len(found) > 1:
        raise DataError(f"{path}: several {kind} fields {found}; choose one with {_KEY_OPTION[kind]}")
    if not found:
        log.info("%s: no %s labels (looked for %s)", path, kind, list(_STANDARD_NAMES[kind]))
        return None
    if found[0] != kind:
        log.info("%s: using field %r as %s", path, found[0], kind)
    return found[0]


def _get_property(atoms, name, where, kind, frames):
    if name is None:
        return None
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    if name in results:
        return results[name]
    source = atoms.info if kind == "energy" else atoms.arrays
    if name not in source:
        having = sum(name in _available(a, kind) for a in frames)
        raise DataError(f"{where}: field {name!r} missing, but {having} of the {len(frames)} frames have it; "
                        f"label every frame, or set {_KEY_OPTION[kind]}: none to use no {kind}")
    value = source[name]
    if kind == "energy":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: field {name!r}: not a number: {value!r}") from None
    return value


# ---- MD17 / rMD17 .npz ----------------------------------------------------------------

_NPZ_NAMES = {
    "numbers": ("nuclear_charges", "z", "Z", "atomic_numbers"),
    "positions": ("coords", "R", "positions", "coordinates"),
    "energy": ("energies", "E", "energy"),
    "forces": ("forces", "F"),
}


def _npz_key(path, data, kind, user_key=AUTO):
    if user_key is None or str(user_key).lower() == "none":
        return None
    if user_key != AUTO:
        if user_key not in data:
            raise DataError(f"{path}: field {user_key!r} not found; fields: {sorted(data.files)}")
        return user_key
    found = [n for n in _NPZ_NAMES[kind] if n in data]
    if not found:
        if kind in ("numbers", "positions"):
            raise DataError(f"{path}: field {kind!r} missing (looked for {list(_NPZ_NAMES[kind])})")
        return None
    return found[0]


def _read_npz(path, energy_key, forces_key, e_factor, f_factor, l_factor):
    try:
        data = np.load(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from exc
    numbers = np.asarray(data[_npz_key(path, data, "numbers")], dtype=np.int64).reshape(-1)
    positions = np.asarray(data[_npz_key(path, data, "positions")], dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(numbers), 3):
        raise DataError(f"{path}: field 'positions': shape {positions.shape}, expected (M, {len(numbers)}, 3)")
    e_name = _npz_key(path, data, "energy", energy_key)
    f_name = _npz_key(path, data, "forces", forces_key)
    energies = None if e_name is None else np.asarray(data[e_name], dtype=np.float64).reshape(-1)
    forces = None if f_name is None else np.asarray(data[f_name], dtype=np.float64)
    m = len(positions)
    if energies is not None and len(energies) != m:
        raise DataError(f"{path}: field {e_name!r}: {len(energies)} values for {m} structures")
    if forces is not None and forces.shape != positions.shape:
        raise DataError(f"{path}: field {f_name!r}: shape {forces.shape}, expected {positions.shape}")
    return [Structure(numbers.copy(), positions[k] * l_factor,
                      energy=None if energies is None else float(energies[k]) * e_factor,
                      forces=None if forces is None else forces[k] * f_factor,
                      source=f"{path}[{k}]") for k in range(m)]


# ---- ANI-1x / ANI-1ccx HDF5 -----------------------------------------------------------

def _read_ani_h5(path, level, e_factor, f_factor, l_factor):
    """Groups (one per formula) with `coordinates` (M,N,3), `atomic_numbers` (N,),
    `<level>.energy` (M,) and optionally `<level>.forces` (M,N,3).

    In this layout a NaN energy means "not computed at this level" (ANI-1ccx covers a subset
    of ANI-1x): such conformers are skipped and counted in the log, never trained on.
    """
    import h5py
    if not level:
        raise DataError(f"{path}: ANI HDF5 files hold several levels of theory; choose one with `level`")
    out, skipped, levels_seen = [], 0, set()
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:
        raise DataError(f"{path}: not a readable HDF5 file: {exc}") from exc
    with handle as f:
        for name, group in _ani_groups(f):
            levels_seen |= {k.rsplit(".", 1)[0] for k in group.keys() if k.endswith(".energy")}
            where = f"{path}:{name}"
            for needed in ("coordinates", "atomic_numbers"):
                if needed not in group:
                    raise DataError(f"{where}: field {needed!r} missing")
            if f"{level}.energy" not in group:
                continue
            numbers = np.asarray(group["atomic_numbers"][()], dtype=np.int64).reshape(-1)
            coords = np.asarray(group["coordinates"][()], dtype=np.float64)
            energies = np.asarray(group[f"{level}.energy"][()], dtype=np.float64).reshape(-1)
            forces = group.get(f"{level}.forces")
            forces = None if forces is None else np.asarray(forces[()], dtype=np.float64)
            if coords.ndim != 3 or coords.shape[1:] != (len(numbers), 3):
                raise DataError(f"{where}: field 'coordinates': shape {coords.shape}, expected (M, {len(numbers)}, 3)")
            if len(energies) != len(coords):
                raise DataError(f"{where}: field '{level}.energy': {len(energies)} values for {len(coords)} conformers")
            if forces is not None and forces.shape != coords.shape:
                raise DataError(f"{where}: field '{level}.forces': shape {forces.shape}, expected {coords.shape}")
            for k in range(len(coords)):
                if np.isnan(energies[k]):
                    skipped += 1
                    continue
                out.append(Structure(numbers.copy(), coords[k] * l_factor, energy=float(energies[k]) * e_factor,
                                     forces=None if forces is None else forces[k] * f_factor,
                                     source=f"{where}[{k}]"))
    if not out and level not in levels_seen:
        raise DataError(f"{path}: level {level!r} not found; levels with energies: {sorted(levels_seen)}")
    if not out:
        raise DataError(f"{path}: no conformer has a {level!r} energy ({skipped} are NaN at that level)")
    if skipped:
        log.info("%s: skipped %d conformers without a %s energy (NaN)", path, skipped, level)
    return out


def _ani_groups(f):
    """Yield (name, group) for every group that holds `coordinates` (any nesting depth)."""
    import h5py
    found = []
    f.visititems(lambda name, obj: found.append((name, obj))
                 if isinstance(obj, h5py.Group) and "coordinates" in obj else None)
    return found


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
