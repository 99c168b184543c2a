"""gmnn.mmff.MMFF94: RDKit's MMFF94 energies in eV, forces that are minus the gradient of the
energy, the same field whether the bonds come from the SMILES or are perceived from the geometry,
and Langevin MD with it that keeps molecules whole at 1000 K."""
import numpy as np
import pytest
from ase import units

from gmnn.mmff import MMFF94
from gmnn.molecules import MoleculeError, bond_set, conformer
from gmnn.sampling import md_frames

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_energy_is_rdkits_mmff94_in_ev():
    from rdkit.Chem import AllChem
    from gmnn.molecules import parse_smiles
    atoms = conformer(ASPIRIN, seed=3)
    mol = parse_smiles(ASPIRIN)
    AllChem.EmbedMolecule(mol, randomSeed=1)
    field = AllChem.MMFFGetMoleculeForceField(mol, AllChem.MMFFGetMoleculeProperties(mol))
    atoms.calc = MMFF94()
    expected = field.CalcEnergy(atoms.positions.ravel().tolist()) * units.kcal / units.mol
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("bonds_from", ["smiles", "geometry"])
def test_forces_are_minus_the_energy_gradient(bonds_from):
    atoms = conformer("OCC(N)C#N", seed=1)  # alcohol, amine, nitrile
    if bonds_from == "geometry":
        del atoms.info["smiles"]
    atoms.calc = MMFF94()
    atoms.rattle(0.05, seed=2)
    forces = atoms.get_forces()
    h = 1e-4
    for k in (0, 3, len(atoms) - 1):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[k, c] += h
            minus.positions[k, c] -= h
            plus.calc, minus.calc = MMFF94(), MMFF94()
            numeric = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
            assert forces[k, c] == pytest.approx(numeric, abs=2e-5)


def test_bonds_from_the_geometry_give_the_smiles_field():
    atoms = conformer(ASPIRIN, seed=0)
    atoms.rattle(0.03, seed=1)
    perceived = atoms.copy()
    del perceived.info["smiles"]
    atoms.calc, perceived.calc = MMFF94(), MMFF94()
    assert perceived.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def test_md_at_1000_K_keeps_the_molecule_whole():
    atoms = conformer("CC(=O)NC", seed=0)  # N-methylacetamide
    bonds = bond_set(atoms)
    frames = md_frames(atoms, "mmff94", temperature=1000.0, samples=20, stride=20,
                       equilibration=100, seed=4, progress=False)
    assert len(frames) == 20 and frames[0].info["sampler"] == "mmff94"
    assert all(bond_set(f) == bonds for f in frames)
    spread = np.std([f.positions for f in frames], axis=0).mean()
    assert spread > 0.05  # it moved


def test_a_smiles_that_is_not_the_structure_is_refused():
    atoms = conformer("CCO", seed=0)
    atoms.info["smiles"] = "CCN"
    atoms.calc = MMFF94()
    with pytest.raises(MoleculeError, match="does not have the atoms"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("smiles, seed", [("C1COC1", 1), ("C1CNC1", 917090), ("OC1COC1", 38870)])
def test_a_start_from_smiles_relaxes_with_the_smiles_bonds(smiles, seed):  # oxetane, azetidine, oxetan-3-ol
    """The relaxation that starts gmnn-sample --smiles gives MMFF94 the SMILES: bonds perceived from
    an ETKDG geometry of a four-membered ring gave a valence error (7 of 477 organic molecules
    could not be sampled)."""
    from gmnn.molecules import start_from_smiles
    atoms = start_from_smiles(smiles, seed=seed, calculator="mmff94")
    assert atoms.info["smiles"] == smiles and atoms.info["relax_fmax"] < 0.05
    assert bond_set(atoms) == bond_set(conformer(smiles, seed=seed))
