"""Molecules from SMILES as starting structures (gmnn-sample --smiles, or a .smi file as input):
an RDKit ETKDG conformer (seeded: `conformer`), checked (neutral, closed shell, allowed
elements: `check_elements`), then relaxed briefly with GFN2-xTB (`relax`, which refuses a
relaxation that breaks or forms a bond). Needs RDKit (`pip install gmnn[qc]`).

A .smi file holds one molecule a line: its SMILES, then optionally a name (whitespace
between); blank lines and lines starting with '#' are skipped.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from .clusters import BOND_SCALE, bonds

SMILES_SUFFIXES = (".smi", ".smiles")


class MoleculeError(ValueError):
    """A SMILES, element or relaxation that cannot give a starting structure; the message is one line."""


def is_smiles_file(path) -> bool:
    return Path(str(path)).suffix.lower() in SMILES_SUFFIXES


def read_smiles_file(path) -> List[Tuple[str, str]]:
    """(SMILES, name) of every molecule in a .smi file; the name defaults to mol<line number>."""
    path = Path(path)
    if not path.exists():
        raise MoleculeError(f"{path}: file not found")
    out = []
    for k, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        out.append((fields[0], fields[1] if len(fields) > 1 else f"mol{k}"))
    if not out:
        raise MoleculeError(f"{path}: no SMILES in the file (one a line: SMILES [name])")
    return out


def parse_smiles(smiles: str):
    """The RDKit molecule of `smiles` with explicit hydrogens; a MoleculeError for text RDKit cannot
    read, a charged molecule or a radical (xTB runs neutral closed shells here)."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise MoleculeError("SMILES input needs RDKit: pip install gmnn[qc]") from None
    text = (smiles or "").strip()
    if not text:
        raise MoleculeError("empty SMILES")
    RDLogger.DisableLog("rdApp.*")  # RDKit prints its own errors to stderr; ours is one line
    try:
        mol = Chem.MolFromSmiles(text)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise MoleculeError(f"SMILES {text!r}: RDKit cannot read it (bad syntax or valence)")
    if len(Chem.GetMolFrags(mol)) != 1:
        raise MoleculeError(f"SMILES {text!r}: {len(Chem.GetMolFrags(mol))} molecules ('.'); give one")
    charge = Chem.GetFormalCharge(mol)
    if charge:
        raise MoleculeError(f"SMILES {text!r}: formal charge {charge:+d}; only neutral molecules are sampled")
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    if radicals:
        raise MoleculeError(f"SMILES {text!r}: {radicals} unpaired electron(s); only closed shells are sampled")
    return Chem.AddHs(mol)


def check_elements(atoms: Atoms, allowed: Optional[Sequence[str]], what: str = "the molecule") -> None:
    """A MoleculeError naming the first element of `atoms` not in `allowed` (None: any)."""
    if not allowed:
        return
    allowed = {a.strip().capitalize() for a in allowed}
    other = sorted(set(atoms.get_chemical_symbols()) - allowed)
    if other:
        raise MoleculeError(f"{what} has {', '.join(other)}: only {', '.join(sorted(allowed))} allowed (--elements)")


def conformer(smiles: str, seed: int = 0, name: Optional[str] = None) -> Atoms:
    """A 3D conformer of `smiles` from RDKit's ETKDG (v3) with `seed`, hydrogens included, centred
    at the origin; info smiles, name, conformer_seed. Stereo centres the SMILES leaves open are
    drawn by the embedding (so another seed may give another stereoisomer)."""
    from rdkit.Chem import AllChem
    mol = parse_smiles(smiles)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # the fallback RDKit recommends for hard cases (cages, strained rings)
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise MoleculeError(f"SMILES {smiles!r}: RDKit could not embed a 3D conformer")
    positions = mol.GetConformer().GetPositions()
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=positions - positions.mean(axis=0))
    atoms.info.update(smiles=smiles.strip(), name=name or smiles.strip(), conformer_seed=int(seed))
    return atoms


def bond_set(atoms: Atoms, scale: float = BOND_SCALE) -> set:
    """The bonded pairs (i < j): closer than `scale` times the sum of covalent radii."""
    i, j, _ = bonds(Atoms(numbers=atoms.numbers, positions=atoms.positions), scale)
    return {(int(a), int(b)) for a, b in zip(i, j) if a < b}


def relax(atoms: Atoms, calculator="gfn2-xtb", fmax: float = 0.05, steps: int = 300) -> Atoms:
    """`atoms` relaxed (ASE BFGS) until the largest force is below `fmax` eV/A or for `steps` steps,
    as a copy with the same info plus relax_fmax (the largest force reached, eV/A). `calculator`: a
    name for sampling.make_calculator or an ASE calculator. A MoleculeError if a bond broke or
    formed on the way (the SMILES is then not a minimum of the calculator's surface)."""
    from ase.optimize import BFGS
    from .sampling import make_calculator
    moved = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    moved.info.update(atoms.info)  # the SMILES: MMFF94 takes its bonds from it, not from the geometry
    moved.calc = make_calculator(calculator) if isinstance(calculator, str) else calculator
    before = bond_set(moved)
    BFGS(moved, logfile=None).run(fmax=fmax, steps=steps)
    largest = float(np.max(np.linalg.norm(moved.get_forces(), axis=1)))
    after = bond_set(moved)
    if before != after:
        what = atoms.info.get("smiles", atoms.get_chemical_formula())
        lost, new = sorted(before - after), sorted(after - before)
        change = f"broke {lost[0]}" if lost else f"formed {new[0]}"
        raise MoleculeError(f"{what}: the relaxation {change} (atom indices): not a stable molecule at this level")
    out = Atoms(numbers=moved.numbers, positions=moved.positions)
    out.info.update(atoms.info)
    out.info["relax_fmax"] = round(largest, 6)
    return out


def start_from_smiles(smiles: str, name: Optional[str] = None, seed: int = 0, calculator="gfn2-xtb",
                      elements: Optional[Sequence[str]] = None, fmax: float = 0.05, steps: int = 300) -> Atoms:
    """gmnn-sample's start from a SMILES: `conformer` (seed), `check_elements`, then a short `relax`."""
    atoms = conformer(smiles, seed, name)
    check_elements(atoms, elements, f"SMILES {smiles!r}")
    return relax(atoms, calculator, fmax, steps)


def starting_structures(path=None, smiles: Optional[str] = None, seed: int = 0, calculator="gfn2-xtb",
                        elements: Optional[Sequence[str]] = None):
    """gmnn-sample's molecules, one at a time: from `smiles` or a .smi file at `path` (each
    `start_from_smiles`), or the first frame of the structure file at `path` (as it is)."""
    import ase.io
    if smiles is not None:
        yield start_from_smiles(smiles, None, seed, calculator, elements)
        return
    if is_smiles_file(path):
        for text, name in read_smiles_file(path):
            yield start_from_smiles(text, name, seed, calculator, elements)
        return
    atoms = ase.io.read(path, index=0)
    atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    check_elements(atoms, elements, str(path))
    yield atoms
