"""Unit conversion into the project's units: eV, Angstrom, eV/Angstrom.

Every loader converts explicitly; nothing is assumed from a file without the user (or the
format's documented convention) saying so.
"""
from ase import units as _u

ENERGY_UNITS = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": _u.kcal / _u.mol,
    "kJ/mol": _u.kJ / _u.mol,
    "Hartree": _u.Hartree,
    "Ha": _u.Hartree,
    "Ry": _u.Rydberg,
}
LENGTH_UNITS = {
    "Angstrom": 1.0,
    "A": 1.0,
    "Å": 1.0,
    "Bohr": _u.Bohr,
    "nm": 10.0,
}


def energy_factor(unit: str) -> float:
    """Factor that converts energies in `unit` to eV."""
    try:
        return ENERGY_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown energy unit {unit!r}; known: {', '.join(ENERGY_UNITS)}") from None


def length_factor(unit: str) -> float:
    """Factor that converts lengths in `unit` to Angstrom."""
    try:
        return LENGTH_UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown length unit {unit!r}; known: {', '.join(LENGTH_UNITS)}") from None


def force_factor(unit: str) -> float:
    """Factor for a force unit written 'energy/length' (e.g. 'kcal/mol/Angstrom', 'Hartree/Bohr')."""
    energy, _, length = unit.rpartition("/")
    if not energy:
        raise ValueError(f"force unit must look like 'energy/length', got {unit!r}")
    return energy_factor(energy) / length_factor(length)
