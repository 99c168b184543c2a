"""Readers by file format, each into `data.Structure`s in eV, Angstrom and eV/Angstrom (the
unit factors come from `data.read_structures`, which dispatches on the suffix): any
ASE-readable file (extxyz first), MD17/rMD17 .npz and ANI-style HDF5. A bad file, key or shape
raises `DataError` naming the file, the structure and the field."""
import logging

import numpy as np

from .data import AUTO, DataError, Structure

log = logging.getLogger(__name__)


# ---- ASE-readable files ---------------------------------------------------------------

def read_ase(path, energy_key, forces_key, e_factor, f_factor, l_factor, selection):
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


def read_npz(path, energy_key, forces_key, e_factor, f_factor, l_factor):
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

def read_ani_h5(path, level, e_factor, f_factor, l_factor):
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
