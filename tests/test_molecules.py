"""Starting structures from SMILES (gmnn.molecules) and normal-mode sampling (gmnn.normal_modes),
with GFN2-xTB (tblite) and RDKit (both in requirements.txt: missing, these fail, not skip);
gmnn-sample --smiles / --normal-modes."""
import ase.io
import numpy as np
import pytest
from ase import units

from gmnn.molecules import MoleculeError, conformer, relax, start_from_smiles
from gmnn.normal_modes import NormalModeError, displace, hessian, minimum, normal_modes, to_wavenumbers
from gmnn.sampling import make_calculator


@pytest.fixture(scope="module")
def xtb():
    return make_calculator("gfn2-xtb")


@pytest.fixture(scope="module")
def ethanol_modes(xtb):
    return minimum(start_from_smiles("CCO", "ethanol", seed=0), xtb)


def _bond_lengths(atoms, a, b):
    """Distances of every bonded pair of elements a-b (closest partner of each a within 1.8 A)."""
    d = atoms.get_all_distances()
    sym = np.array(atoms.get_chemical_symbols())
    out = []
    for i in np.where(sym == a)[0]:
        partners = [d[i, j] for j in np.where(sym == b)[0] if j != i and d[i, j] < 1.8]
        out += partners
    return np.array(out)


# ---- molecules from SMILES ------------------------------------------------------------------

def test_smiles_conformer_has_the_composition_and_the_bond_lengths_of_the_molecule():
    aspirin = conformer("CC(=O)Oc1ccccc1C(=O)O", seed=1, name="aspirin")
    assert aspirin.get_chemical_formula(mode="hill") == "C9H8O4"
    assert aspirin.info["name"] == "aspirin" and aspirin.info["conformer_seed"] == 1
    ethanol = start_from_smiles("CCO", seed=0)  # ETKDG, then GFN2-xTB to 0.05 eV/A
    assert ethanol.get_chemical_formula(mode="hill") == "C2H6O"
    assert ethanol.info["relax_fmax"] < 0.05
    for a, b, lo, hi, n in (("C", "C", 1.48, 1.56, 2), ("C", "O", 1.38, 1.46, 1), ("O", "H", 0.94, 1.00, 1),
                            ("C", "H", 1.07, 1.12, 5)):
        lengths = _bond_lengths(ethanol, a, b)
        assert len(lengths) == n, (a, b, lengths)
        assert np.all((lengths > lo) & (lengths < hi)), f"{a}-{b} bonds {lengths} A outside {lo}-{hi}"


@pytest.mark.parametrize("smiles, message", [
    ("CC(O", "RDKit cannot read it"),
    ("C1CC", "RDKit cannot read it"),
    ("", "empty SMILES"),
    ("C[NH3+]", "formal charge \\+1"),
    ("[CH3]", "unpaired electron"),
    ("CCO.O", "2 molecules"),
])
def test_bad_smiles_is_a_one_line_error(smiles, message):
    with pytest.raises(MoleculeError, match=message) as caught:
        conformer(smiles)
    assert "\n" not in str(caught.value)


def test_elements_outside_the_allowed_ones_are_refused():
    with pytest.raises(MoleculeError, match="has Cl: only C, H, N, O allowed"):
        start_from_smiles("CCCl", elements=["C", "H", "N", "O"])


def test_relaxation_that_changes_the_bonds_is_refused(xtb):
    water = conformer("O")
    water.positions[1] = water.positions[0] + 2.0 * (water.positions[1] - water.positions[0])  # an O-H at ~1.9 A
    with pytest.raises(MoleculeError, match="the relaxation formed"):
        relax(water, xtb)


def test_same_seed_gives_the_same_conformer_and_another_seed_another():
    a, b, c = conformer("CCCCO", seed=5), conformer("CCCCO", seed=5), conformer("CCCCO", seed=6)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert np.abs(a.positions - c.positions).max() > 0.1


# ---- normal modes ---------------------------------------------------------------------------

def test_water_has_six_zero_modes_and_positive_vibrations_with_the_OH_stretch_near_3650(xtb):
    water = minimum(start_from_smiles("O"), xtb).atoms
    masses = np.repeat(water.get_masses(), 3)
    h = hessian(water, xtb) / np.sqrt(masses[:, None] * masses[None, :])
    freqs = to_wavenumbers(np.linalg.eigvalsh(h))  # all 3N, rigid-body motions included
    order = np.argsort(np.abs(freqs))
    zero, vib = freqs[order[:6]], np.sort(freqs[order[6:]])
    assert np.all(np.abs(zero) < 60), f"translations/rotations at {zero} cm^-1"
    assert np.all(vib > 0), f"imaginary vibration: {vib}"
    bend, stretches = vib[0], vib[1:]
    assert 1450 < bend < 1700, f"H-O-H bend at {bend:.0f} cm^-1"
    assert np.all((stretches > 3400) & (stretches < 3900)), f"O-H stretches at {stretches} cm^-1"
    modes = normal_modes(water, xtb, h=hessian(water, xtb))  # projected: exactly 3N-6 internal modes
    np.testing.assert_allclose(modes.frequencies, vib, rtol=0.02)


def test_ethanol_modes_are_real_with_the_OH_stretch_highest(ethanol_modes):
    freqs = ethanol_modes.frequencies
    assert len(freqs) == 3 * 9 - 6
    assert np.all(freqs > 0), f"imaginary modes: {freqs[freqs <= 0]}"
    assert 3400 < freqs[-1] < 3900, f"O-H stretch at {freqs[-1]:.0f} cm^-1"
    assert 2800 < freqs[-2] < 3200, f"C-H stretches up to {freqs[-2]:.0f} cm^-1"


def test_linear_molecule_has_3N_minus_5_modes(xtb):
    hcn = minimum(start_from_smiles("C#N"), xtb)
    assert len(hcn.frequencies) == 4
    assert np.all(hcn.frequencies > 0)


def test_boltzmann_displacements_raise_the_xtb_energy_by_equipartition(ethanol_modes, xtb):
    """Harmonic limit at 10 K: mean energy rise N_f k_B T / 2 (statistical error of the mean ~2%).
    (At 100 K ethanol's rise is already ~12% above: the torsions, displaced rectilinearly.)"""
    temperature, n = 10.0, 200
    frames = displace(ethanol_modes, temperature, n, seed=3, min_frequency=1.0)
    start = ethanol_modes.atoms.copy()
    start.calc = xtb
    e0 = start.get_potential_energy()
    rise = []
    for f in frames:
        f.calc = xtb
        rise.append(f.get_potential_energy() - e0)
    expected = len(ethanol_modes.frequencies) * units.kB * temperature / 2
    harmonic = np.mean([f.info["harmonic_energy"] for f in frames])
    assert np.mean(rise) == pytest.approx(expected, rel=0.10), \
        f"xTB energy rise {np.mean(rise):.4f} eV, harmonic {harmonic:.4f}, equipartition {expected:.4f}"
    assert harmonic == pytest.approx(expected, rel=0.10)
    assert np.mean(rise) == pytest.approx(harmonic, rel=0.05)  # the same samples: only anharmonicity differs


def test_ani_scheme_bounds_the_harmonic_energy_by_three_halves_N_kT(ethanol_modes):
    temperature, n_atoms = 500.0, 9
    frames = displace(ethanol_modes, temperature, 300, seed=4, scheme="ani", min_frequency=1.0)
    energy = np.array([f.info["harmonic_energy"] for f in frames])
    bound = 1.5 * n_atoms * units.kB * temperature
    assert energy.max() <= bound * (1 + 1e-6)
    assert energy.mean() == pytest.approx(bound / 2, rel=0.12)  # sum c_i ~ Uniform(0, 1)


def test_displacements_are_reproducible_and_keep_the_molecule_whole(ethanol_modes):
    from gmnn.molecules import bond_set
    a = displace(ethanol_modes, 1000.0, 20, seed=7)
    b = displace(ethanol_modes, 1000.0, 20, seed=7)
    c = displace(ethanol_modes, 1000.0, 20, seed=8)
    np.testing.assert_array_equal(np.array([f.positions for f in a]), np.array([f.positions for f in b]))
    assert not np.allclose(a[0].positions, c[0].positions)
    reference = bond_set(ethanol_modes.atoms)
    assert all(bond_set(f) == reference for f in a)
    assert [f.info["sample"] for f in a] == list(range(20))


def test_displace_refuses_a_bad_scheme_or_temperature(ethanol_modes):
    with pytest.raises(NormalModeError, match="scheme must be one of"):
        displace(ethanol_modes, 300.0, 1, scheme="wigner")
    with pytest.raises(NormalModeError, match="positive number of K"):
        displace(ethanol_modes, -5.0, 1)


# ---- gmnn-sample ----------------------------------------------------------------------------

def test_gmnn_sample_from_smiles_normal_modes_and_md_is_seeded(tmp_path):
    from gmnn.cli import sample_main
    nm = ["--smiles", "CCO", "--normal-modes", "--samples", "4", "--temperature", "500", "--seed", "2"]
    assert sample_main(nm + ["-o", str(tmp_path / "a.xyz")]) == 0
    assert sample_main(nm + ["-o", str(tmp_path / "b.xyz")]) == 0
    a, b = ase.io.read(tmp_path / "a.xyz", ":"), ase.io.read(tmp_path / "b.xyz", ":")
    assert len(a) == 4 and a[0].info["sampler"] == "normal-modes" and a[0].info["smiles"] == "CCO"
    np.testing.assert_array_equal(np.array([f.positions for f in a]), np.array([f.positions for f in b]))
    (tmp_path / "two.smi").write_text("# name after the SMILES\nCCO ethanol\nC=O formaldehyde\n")
    md = ["--samples", "2", "--stride", "5", "--equilibration", "5", "--temperature", "700", "--seed", "1"]
    assert sample_main([str(tmp_path / "two.smi"), "-o", str(tmp_path / "md.xyz")] + md) == 0
    frames = ase.io.read(tmp_path / "md.xyz", ":")
    assert [f.info["name"] for f in frames] == ["ethanol", "ethanol", "formaldehyde", "formaldehyde"]
    assert frames[0].get_chemical_formula(mode="hill") == "C2H6O" and frames[0].info["temperature_K"] == 700.0


@pytest.mark.parametrize("argv, message", [
    (["--smiles", "C1CC"], "RDKit cannot read it"),
    (["--smiles", "CCCl", "--elements", "C,H,N,O"], "has Cl"),
    ([], "INPUT .* or as --smiles, not neither"),
    (["--smiles", "CCO", "--normal-modes", "--min-frequency", "-1"], "--min-frequency must be a positive"),
    (["--smiles", "CCO", "--dimers", "--density", "0.8"], "takes a structure file"),
])
def test_gmnn_sample_bad_molecule_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    from gmnn.cli import sample_main
    assert sample_main(argv + ["-o", str(tmp_path / "x.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:")
    import re
    assert re.search(message, err), err


# ---- the organic pre-training set (examples/organic) -----------------------------------------

def test_organic_set_is_CHNO_and_keeps_the_heldout_molecules_out_of_training():
    import csv
    from rdkit import Chem
    from gmnn_testing import ROOT
    with open(ROOT / "examples" / "organic" / "molecules.csv") as f:
        rows = list(csv.DictReader(f))
    keys = [Chem.MolToSmiles(Chem.MolFromSmiles(r["smiles"])) for r in rows]
    assert len(set(keys)) == len(rows), "a molecule is listed twice"
    assert len({r["name"] for r in rows}) == len(rows)
    heldout = {r["name"] for r in rows if r["split"] == "heldout"}
    assert {"ethanol", "aspirin"} <= heldout and 10 <= len(heldout) <= 25
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) >= 300
    for r in rows:
        mol = Chem.MolFromSmiles(r["smiles"])
        assert {a.GetSymbol() for a in mol.GetAtoms()} <= {"C", "H", "N", "O"}, r["name"]
        assert int(r["heavy_atoms"]) == mol.GetNumHeavyAtoms()
        assert r["split"] == "heldout" or mol.GetNumHeavyAtoms() <= 9, r["name"]
    groups = {g for r in train for g in r["groups"].split(";")}
    assert {"alcohol", "ether", "aldehyde", "ketone", "acid", "ester", "amine", "amide", "nitrile", "aromatic",
            "heterocycle"} <= groups


def test_a_nearly_free_methyl_rotor_still_gives_a_minimum(xtb):
    """Methyl propanoate (the seed make_data.py gives it): relaxed to 1e-3 eV/A, its O-CH3 rotor kept
    a mode at ~30i cm^-1 and minimum() gave up; at 1e-4 eV/A it is a minimum."""
    modes = minimum(start_from_smiles("CCC(=O)OC", seed=715564), xtb)
    assert modes.frequencies[0] > -20.0
    assert len(modes.frequencies) == 3 * 14 - 6
