"""DFT-D3 dispersion as a physical add-on to a model trained on plain DFT (e.g. PBE).

PBE has no dispersion. The network learns PBE; D3 is added at run time, with the damping
parameters of the functional the labels were computed with:

    LAMMPS:  lammps_d3_lines(["C", "H", "O"], model="model.pt")  ->
             neigh_modify one 28000 page 280000
             pair_style hybrid/overlay gmnn dispersion/d3 bj pbe 30 20
             pair_coeff * * gmnn model.pt C H O
             pair_coeff * * dispersion/d3 C H O
    Python:  atoms.calc = with_d3(GMNNCalculator("model.pt"), functional="pbe")

This module is the one place that says which D3 gmnn recommends, for both: Becke-Johnson
(rational) damping, two-body terms only (pair_style dispersion/d3 has no three-body ATM term, so
the Python side is loaded with atm=False, i.e. s9 = 0), a 30 Å two-body cutoff and a 20 Å cutoff
for the coordination numbers (the example of the LAMMPS documentation; both hard cutoffs). Long
liquid MD cuts them to 12/10 Å and adds back the pressure that loses (tail_pressure_bar), with D3
on the outer rRESPA level: examples/liquid_ethanol/liquid_md.py and the README's liquid deck.

The Python calculator (D3) runs the s-dftd3 library (PyPI package `dftd3`) and converts to eV and
Å with the constants of pair_style dispersion/d3 (Bohr = 0.52917725 Å, Hartree = 27.21140795 eV),
not ASE's CODATA values: with those the two engines agree to ~1e-8 relative (5e-9 eV, 1e-9 eV/Å
for ethanol; the precision of the tables compiled into LAMMPS) instead of ~1e-6
(tests/lammps/test_lammps_d3.py). dftd3.ase.DFTD3 with the same settings gives the same D3 up to
that 1e-6 relative difference in units."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

# The recommended settings (used by D3, with_d3 and lammps_d3_lines alike).
FUNCTIONAL = "pbe"
DAMPING = "bj"
CUTOFF = 30.0      # Å, two-body dispersion
CN_CUTOFF = 20.0   # Å, coordination numbers

# pair_style dispersion/d3 (src/EXTRA-PAIR/pair_dispersion_d3.cpp: autoang, autoev)
BOHR = 0.52917725        # Å
HARTREE = 27.21140795    # eV

# damping name here -> (keyword of pair_style dispersion/d3, class of dftd3.interface); "bj" is the
# recommended one. bj and bjm agree between the engines to ~1e-8 relative, zero and zerom to ~5e-7
# (LAMMPS' r0ab table was converted with another Bohr): tests/lammps/test_lammps_d3.py.
_DAMPINGS = {"bj": ("bj", "RationalDampingParam"), "zero": ("original", "ZeroDampingParam"),
             "bjm": ("bjm", "ModifiedRationalDampingParam"), "zerom": ("zerom", "ModifiedZeroDampingParam")}

# LAMMPS' neighbour lists allow 2000 neighbours per atom by default; within cutoff + skin (2 Å in
# metal units) D3 needs room for the densest matter, ~0.2 atoms/Å^3 (diamond: 0.18). Under
# hybrid/overlay the gmnn sub-style gets this full list too (and keeps its own cutoff).
MAX_DENSITY = 0.2   # atoms/Å^3


def neigh_modify_line(cutoff: float = CUTOFF) -> str:
    one = max(2000, int(np.ceil(4.0 / 3.0 * np.pi * (cutoff + 2.0) ** 3 * MAX_DENSITY / 1000.0)) * 1000)
    return f"neigh_modify one {one} page {10 * one}"


def _check(damping: str, cutoff: float, cn_cutoff: float):
    if damping not in _DAMPINGS:
        raise ValueError(f"damping {damping!r}: one of {sorted(_DAMPINGS)}")
    if not 0.0 < cn_cutoff <= cutoff:
        # pair_style dispersion/d3 counts coordination numbers over its pair neighbour list
        raise ValueError(f"need 0 < cn_cutoff <= cutoff, got cutoff {cutoff}, cn_cutoff {cn_cutoff}")


def lammps_d3_lines(elements, functional: str = FUNCTIONAL, damping: str = DAMPING, cutoff: float = CUTOFF,
                    cn_cutoff: float = CN_CUTOFF, model: str | None = None, gmnn_args: str = "") -> list[str]:
    """The LAMMPS input lines (units metal) for D3 with these settings, one string each.

    `elements`: the element of each atom type, in type order (as for pair_coeff).
    `model`: a gmnn model file: then the lines combine it with D3 by pair_style hybrid/overlay
    (`gmnn_args`: options of pair_style gmnn, e.g. "device cpu"); None: D3 alone."""
    _check(damping, cutoff, cn_cutoff)
    elements = " ".join(elements)
    d3 = f"dispersion/d3 {_DAMPINGS[damping][0]} {functional} {cutoff:g} {cn_cutoff:g}"
    if model is None:
        return [neigh_modify_line(cutoff), f"pair_style {d3}", f"pair_coeff * * {elements}"]
    gmnn = f"gmnn {gmnn_args}".strip()
    return [neigh_modify_line(cutoff), f"pair_style hybrid/overlay {gmnn} {d3}",
            f"pair_coeff * * gmnn {model} {elements}", f"pair_coeff * * dispersion/d3 {elements}"]


class D3(Calculator):
    """ASE calculator for DFT-D3 by the s-dftd3 library, with the settings and units of
    `pair_style dispersion/d3` (see the module docstring): energy, per-atom energies, forces and,
    for periodic cells, stress, in eV and Å."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, functional: str = FUNCTIONAL, damping: str = DAMPING, cutoff: float = CUTOFF,
                 cn_cutoff: float = CN_CUTOFF, **kwargs):
        super().__init__(**kwargs)
        _check(damping, cutoff, cn_cutoff)
        from dftd3 import interface
        self.functional, self.damping, self.cutoff, self.cn_cutoff = functional, damping, cutoff, cn_cutoff
        # two-body only (atm=False: s9 = 0), as pair_style dispersion/d3
        self._param = getattr(interface, _DAMPINGS[damping][1])(method=functional, atm=False)
        self._model = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from dftd3.interface import DispersionModel
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        positions, cell = atoms.positions / BOHR, atoms.cell.array / BOHR
        if self._model is None or set(system_changes) - {"positions", "cell"}:
            self._model = DispersionModel(atoms.numbers, positions, cell, atoms.pbc)
            # disp3 (three-body) is unused: s9 = 0
            self._model.set_realspace_cutoff(disp2=self.cutoff / BOHR, disp3=self.cn_cutoff / BOHR,
                                             cn=self.cn_cutoff / BOHR)
        else:
            self._model.update(positions, cell)
        res = self._model.get_dispersion(param=self._param, grad=True)
        energy = float(res["energy"]) * HARTREE
        self.results["energy"] = self.results["free_energy"] = energy
        self.results["forces"] = -res["gradient"] * (HARTREE / BOHR)
        if "energies" in properties:
            # pair energies, half to each atom (as LAMMPS' compute pe/atom); a second pass
            pairs = self._model.get_pairwise_dispersion(param=self._param)
            self.results["energies"] = (pairs["additive pairwise energy"].sum(axis=1)
                                        + pairs["non-additive pairwise energy"].sum(axis=1)) * HARTREE
        if atoms.pbc.all():
            self.results["stress"] = (res["virial"] * HARTREE / atoms.get_volume()).flat[[0, 4, 8, 5, 2, 1]]


def with_d3(calc, functional: str = FUNCTIONAL, damping: str = DAMPING, cutoff: float = CUTOFF,
            cn_cutoff: float = CN_CUTOFF):
    """`calc` (e.g. a GMNNCalculator of a PBE-trained model) + D3: an ASE SumCalculator, the
    Python counterpart of lammps_d3_lines(..., model=...)."""
    from ase.calculators.mixing import SumCalculator
    return SumCalculator([calc, D3(functional, damping, cutoff, cn_cutoff)])


def tail_pressure_bar(atoms, cutoff: float, cn_cutoff: float, functional: str = FUNCTIONAL,
                      damping: str = DAMPING) -> float:
    """The pressure (bar) D3 loses in the periodic `atoms` when cut at `cutoff`/`cn_cutoff`
    instead of the recommended CUTOFF/CN_CUTOFF: P(recommended) - P(cut), negative (dispersion
    attracts). Long MD cuts D3 short to save time (in LAMMPS D3 at 30 Å costs several times the
    network); like `pair_modify tail yes` for Lennard-Jones, a barostat aiming at P - tail with the
    short cutoff samples the density of the full D3 at P. Measured on a configuration rather than
    integrated analytically: the D3 coefficients depend on coordination numbers."""
    from ase.units import bar

    def pressure(cut, cn):
        d3 = D3(functional, damping, cut, cn)
        return -float(np.mean(d3.get_stress(atoms)[:3])) / bar
    return pressure(CUTOFF, CN_CUTOFF) - pressure(cutoff, cn_cutoff)
