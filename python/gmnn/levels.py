"""Levels of theory for reference labels: GFN2-xTB (tblite), HF/DFT/MP2/CCSD/CCSD(T) (PySCF).

A level of theory is written "method/basis" ("pbe/def2-svp", "ccsd(t)/cc-pvdz", "hf/sto-3g",
"mp2/cc-pvdz") or "gfn2-xtb" / "gfn1-xtb". Any method that is not HF, MP2, CCSD or CCSD(T)
must be a DFT functional PySCF knows. Defaults: density fitting for DFT (`density_fit`),
all electrons correlated (`frozen_core=False`), closed-shell neutral molecules. `check_level`
refuses a level, option or charge/spin that cannot work before any structure is computed;
`compute` labels one structure. Requires `pip install gmnn[qc]`.
"""
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

CORRELATED = ("hf", "mp2", "ccsd", "ccsd(t)")
XTB = ("gfn2-xtb", "gfn1-xtb")
XTB_MAX_Z = 86  # GFN1/GFN2 parametrise H-Rn


class LabelError(ValueError):
    """A level of theory, option, input or output file that cannot work; the message is one line."""


@dataclass(frozen=True)
class Level:
    method: str                 # "pbe", "ccsd(t)", "gfn2-xtb", ...
    basis: Optional[str]        # None for xTB
    density_fit: bool = True    # DFT only
    frozen_core: bool = False   # MP2/CCSD/CCSD(T)
    charge: int = 0
    spin: int = 0               # 2S (number of unpaired electrons)

    @property
    def name(self) -> str:
        return self.method if self.basis is None else f"{self.method}/{self.basis}"

    @property
    def is_dft(self) -> bool:
        return self.method not in CORRELATED and self.method not in XTB

    def options(self) -> dict:
        """The settings besides the name that change the labels, where not the default; written
        into every frame, and a frame without one of them has the default."""
        options = {}
        if self.charge:
            options["charge"] = self.charge
        if self.spin:
            options["spin"] = self.spin
        if self.is_dft and not self.density_fit:
            options["density_fit"] = False
        if self.method in CORRELATED[1:] and self.frozen_core:
            options["frozen_core"] = True
        return options

    def describe(self) -> str:
        return describe(self.name, self.options())

    @classmethod
    def parse(cls, text: str, **options) -> "Level":
        text = text.strip().lower()
        if text in XTB:
            return cls(text, None, **options)
        method, sep, basis = text.partition("/")
        if method in XTB:
            raise LabelError(f"level of theory {text!r}: xTB brings its own basis, write {method!r} alone")
        if not sep or not method.strip() or not basis.strip():
            raise LabelError(f"level of theory {text!r}: expected 'method/basis' (e.g. 'pbe/def2-svp') "
                             f"or one of {', '.join(XTB)}")
        return cls(method.strip(), basis.strip(), **options)


def describe(name: str, options: dict) -> str:
    """"pbe/def2-svp charge 1 spin 1 without density fitting": a level as messages name it."""
    words = [name]
    for key, value in options.items():
        if key == "density_fit":
            words.append("with density fitting" if value else "without density fitting")
        elif key == "frozen_core":
            words.append("frozen core" if value else "all electrons")
        else:
            words.append(f"{key} {value}")
    return " ".join(words)


def compute(numbers, positions, level: Level, forces: bool = True,
            ghosts: Optional[Sequence[bool]] = None) -> Tuple[float, Optional[np.ndarray]]:
    """Energy (eV) and forces (eV/A, or None) of one structure. `ghosts` marks atoms that bring
    only their basis functions (no nucleus, no electrons): a molecule's energy in the basis of a
    whole cluster, for the counterpoise correction of the basis set superposition error."""
    if level.method in XTB:
        if ghosts is not None and any(ghosts):
            raise LabelError(f"{level.name} has no basis functions to place on ghost atoms")
        return _xtb(numbers, positions, level, forces)
    return _pyscf(numbers, positions, level, forces, ghosts)


def _xtb(numbers, positions, level, forces):
    from tblite.ase import TBLite
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = TBLite(method="GFN2-xTB" if level.method == "gfn2-xtb" else "GFN1-xTB",
                        charge=level.charge, multiplicity=level.spin + 1, verbosity=0)
    energy = atoms.get_potential_energy()
    return energy, (atoms.get_forces() if forces else None)


def _molecule(numbers, positions, level, ghosts=None):
    from pyscf import gto
    from pyscf.data.elements import ELEMENTS
    ghosts = np.zeros(len(numbers), bool) if ghosts is None else np.asarray(ghosts, bool)
    symbols = [("ghost-" if g else "") + ELEMENTS[int(z)] for z, g in zip(numbers, ghosts)]
    return gto.M(atom=[(s, tuple(p)) for s, p in zip(symbols, positions)], basis=level.basis,
                 unit="Angstrom", charge=level.charge, spin=level.spin, verbose=0)


def _mean_field(mol, level):
    from pyscf import dft, scf
    restricted = level.spin == 0
    if level.is_dft:
        mf = (dft.RKS if restricted else dft.UKS)(mol)
        mf.xc = level.method
        return mf.density_fit() if level.density_fit else mf
    return (scf.RHF if restricted else scf.UHF)(mol)


def _pyscf(numbers, positions, level, forces, ghosts=None):
    from pyscf import cc, mp
    mf = _mean_field(_molecule(numbers, positions, level, ghosts), level)
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge ({level.name})")
    frozen = _n_core_orbitals(numbers) if level.frozen_core else None
    post = None
    if level.method == "mp2":
        post = mp.MP2(mf, frozen=frozen).run()
        energy = post.e_tot
    elif level.method in ("ccsd", "ccsd(t)"):
        post = cc.CCSD(mf, frozen=frozen).run()
        if not post.converged:
            raise RuntimeError(f"CCSD did not converge ({level.name})")
        energy = post.e_tot
        if level.method == "ccsd(t)":
            energy += post.ccsd_t()
    else:
        energy = mf.e_tot
    grad = None
    if forces:
        if level.method == "ccsd(t)":
            from pyscf.grad import ccsd_t as ccsd_t_grad
            grad = ccsd_t_grad.Gradients(post).kernel()
        else:
            grad = (post or mf).nuc_grad_method().kernel()
        grad = -np.asarray(grad) * units.Hartree / units.Bohr
    return float(energy) * units.Hartree, grad


def _n_core_orbitals(numbers) -> int:
    core = 0
    for z in numbers:
        core += 0 if z <= 2 else 1 if z <= 10 else 5 if z <= 18 else 9
    return core


# ---- checks before any work ----------------------------------------------------------------

def check_level(level: Level, structures: Sequence[Atoms], forces: bool = True,
                indices: Optional[Sequence[int]] = None) -> None:
    """Raise LabelError if `level` cannot label `structures` (those in `indices`, default all): an
    unknown method, functional or basis, a basis without some element, options that do not apply,
    a charge/spin that does not fit the electrons of the first structure, periodic structures.
    Costs milliseconds, computes nothing."""
    indices = list(range(len(structures))) if indices is None else list(indices)
    if level.spin < 0:
        raise LabelError(f"--spin {level.spin}: the number of unpaired electrons cannot be negative")
    if not level.density_fit and not level.is_dft:
        raise LabelError(f"--no-density-fit applies to DFT only, not to {level.name}")
    if level.frozen_core and level.method not in CORRELATED[1:]:
        raise LabelError(f"--frozen-core applies to MP2, CCSD and CCSD(T) only, not to {level.name}")
    for k in indices:
        if np.any(structures[k].pbc):
            raise LabelError(f"structure {k} is periodic (pbc={structures[k].pbc.tolist()}); gmnn-label computes "
                             f"isolated molecules: set pbc to False if the cell is only a box around a molecule")
    first = structures[indices[0]]
    electrons = int(np.sum(first.numbers)) - level.charge
    if electrons < 0 or level.spin > electrons or (electrons - level.spin) % 2:
        raise LabelError(f"charge {level.charge} and spin {level.spin} (unpaired electrons) do not fit structure "
                         f"{indices[0]} ({first.get_chemical_formula()}, {electrons} electrons): the unpaired "
                         f"electrons must be at most the electrons and of the same parity")
    elements = sorted({int(z) for k in indices for z in structures[k].numbers})
    if level.method in XTB:
        _check_xtb(level, elements)
    else:
        _check_pyscf(level, first, elements, forces)


def _check_xtb(level, elements):
    try:
        import tblite.ase  # noqa: F401
    except ImportError:
        raise LabelError(f"{level.name} needs tblite: pip install gmnn[qc]") from None
    from ase.data import chemical_symbols
    beyond = [chemical_symbols[z] for z in elements if z > XTB_MAX_Z]
    if beyond:
        raise LabelError(f"{level.name} has no parameters for {', '.join(beyond)} (H to Rn only)")


def _check_pyscf(level, first, elements, forces):
    try:
        from pyscf import gto
    except ImportError:
        raise LabelError(f"{level.name} needs PySCF: pip install gmnn[qc]") from None
    if level.method == "ccsd(t)" and forces and level.spin:
        raise LabelError(f"CCSD(T) forces need a closed shell (--spin 0): PySCF's open-shell CCSD(T) gradient "
                         f"differs from finite differences (1% for OH/STO-3G); use --no-forces, or ccsd")
    if level.is_dft:
        _check_functional(level)
    from ase.data import chemical_symbols
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PySCF's hint to install basis-set-exchange
        for z in elements:
            try:
                gto.basis.load(level.basis, chemical_symbols[z])
            except Exception as exc:  # BasisNotFoundError, or a parse error of a basis file
                if "Unknown basis" in str(exc):
                    raise LabelError(f"level {level.name}: unknown basis {level.basis!r}") from None
                raise LabelError(f"level {level.name}: basis {level.basis!r} has no functions for "
                                 f"{chemical_symbols[z]}") from None
    if level.is_dft:
        try:  # a dispersion correction (-d3bj, -d4) is set up with the molecule
            mf = _mean_field(_molecule(first.numbers, first.positions, level), level)
            getattr(mf, "get_dispersion", lambda: None)()
        except Exception as exc:
            raise LabelError(f"level {level.name}: dispersion correction: {one_line(exc)}") from None


def _check_functional(level):
    from pyscf.dft import libxc
    xc = level.method
    try:
        from pyscf.scf.dispersion import parse_dft
    except ImportError:
        parse_dft = None
    try:
        if parse_dft is not None:
            xc = parse_dft(xc)[0]  # strips -d3bj/-d4; refuses the '-3c' composites PySCF lacks
        libxc.parse_xc(xc)
    except Exception as exc:  # KeyError from libxc, NotImplementedError from parse_dft
        raise LabelError(f"unknown method {level.method!r} in level {level.name}: not one of "
                         f"{', '.join(CORRELATED + XTB)} and not a DFT functional PySCF can use "
                         f"({one_line(exc)})") from None


def one_line(exc) -> str:
    return " ".join(str(exc).strip("'\"").split())
