"""Loaders: every shipped file with the right units, and clear errors for bad data."""
import numpy as np
import pytest
from ase import units

from gmnn.data import DataError, read_structures
from gmnn_testing import ANI, CARBON, ETHANOL, QM9

KCAL = units.kcal / units.mol


def first_frame_raw(path, force_column):
    """Energy and first atom's force from the extxyz text itself (no ASE parsing)."""
    lines = open(path).read().splitlines()
    energy = float(lines[1].split("energy=")[1].split()[0])
    return energy, np.array(lines[2].split()[force_column:force_column + 3], dtype=float)


def test_rmd17_extxyz_is_converted_from_kcal_per_mol(ethanol_structures):
    assert len(ethanol_structures) == 100
    e_raw, f_raw = first_frame_raw(ETHANOL, 4)  # species pos forces
    s = ethanol_structures[0]
    assert s.energy == pytest.approx(e_raw * KCAL, rel=1e-12)
    np.testing.assert_allclose(s.forces[0], f_raw * KCAL, rtol=1e-12)
    assert sorted(s.numbers.tolist()) == [1] * 6 + [6, 6, 8]
    assert not s.pbc.any()


def test_carbon_extxyz_uses_the_force_field_in_ev(carbon_structures):
    e_raw, f_raw = first_frame_raw(CARBON, 7)  # species pos frac_pos force
    s = carbon_structures[0]
    assert s.energy == pytest.approx(e_raw)
    np.testing.assert_allclose(s.forces[0], f_raw)
    assert s.pbc.all() and abs(np.linalg.det(s.cell)) > 1.0


def test_qm9_energy_key_and_hartree():
    structures = read_structures(QM9, energy_key="U0", energy_unit="Hartree")
    assert len(structures) == 100
    assert structures[0].energy == pytest.approx(-40.47893 * units.Hartree)
    assert structures[0].forces is None


def test_ani_hdf5_levels_and_units():
    import h5py
    dft = read_structures(ANI, level="wb97x_dz")
    cc = read_structures(ANI, level="ccsd(t)_cbs")
    assert len(dft) == 8 and len(cc) == 6  # two conformers have no CCSD(T) energy (NaN)
    with h5py.File(ANI) as f:
        name = sorted(k for k in f.keys())[0]
        e = f[name]["wb97x_dz.energy"][0]
        force = f[name]["wb97x_dz.forces"][0]
    first = [s for s in dft if f":{name}[0]" in s.source][0]
    assert first.energy == pytest.approx(e * units.Hartree)
    np.testing.assert_allclose(first.forces, force.astype(float) * units.Hartree, rtol=1e-6)
    assert cc[0].forces is None


def test_md17_npz(tmp_path, ethanol_structures):
    """An rMD17-layout .npz (kcal/mol, Angstrom) built from the shipped real frames."""
    frames = ethanol_structures[:5]
    path = tmp_path / "rmd17_ethanol.npz"
    np.savez(path, nuclear_charges=frames[0].numbers, coords=np.stack([s.positions for s in frames]),
             energies=np.array([s.energy for s in frames]) / KCAL,
             forces=np.stack([s.forces for s in frames]) / KCAL)
    back = read_structures(path)
    assert len(back) == 5
    assert back[2].energy == pytest.approx(frames[2].energy, rel=1e-12)
    np.testing.assert_allclose(back[4].forces, frames[4].forces, rtol=1e-12)
    assert len(read_structures(path, index="1:3")) == 2


def write_xyz(path, text):
    path.write_text(text)
    return path


def test_nan_label_names_file_structure_and_field(tmp_path):
    p = write_xyz(tmp_path / "bad.xyz", "2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc=\"F F F\"\n"
                  "H 0 0 0 0 0 0\nH 0 0 0.7 0 0 nan\n")
    with pytest.raises(DataError, match=r"bad.xyz\[0\].*'forces'.*NaN"):
        read_structures(p)
    p = write_xyz(tmp_path / "nanE.xyz", "1\nProperties=species:S:1:pos:R:3 energy=nan pbc=\"F F F\"\nH 0 0 0\n")
    with pytest.raises(DataError, match=r"nanE.xyz\[0\].*'energy'"):
        read_structures(p)


def test_shape_mismatch_in_npz(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, z=np.array([1, 1]), R=np.zeros((3, 2, 3)), E=np.zeros(2), F=np.zeros((3, 2, 3)))
    with pytest.raises(DataError, match=r"bad.npz.*'E'.*2 values for 3"):
        read_structures(p)


def test_missing_level_lists_the_available_ones():
    with pytest.raises(DataError, match=r"level 'b3lyp' not found.*wb97x_dz"):
        read_structures(ANI, level="b3lyp")
    with pytest.raises(DataError, match="choose one with `level`"):
        read_structures(ANI)


def test_unknown_element_for_model(ethanol_structures):
    """A typed error (fine-tuning catches it to offer --add-elements) that names the structure."""
    from gmnn.data import UnknownElementError
    from gmnn.graph import structure_graph
    with pytest.raises(UnknownElementError, match=r"rmd17_ethanol_100.xyz\[0\].*\['O'\] unknown to the model"):
        structure_graph(ethanol_structures[0], [1, 6], 5.0)


def test_missing_file_and_bad_unit(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_structures(tmp_path / "nope.xyz")
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        read_structures(ETHANOL, energy_unit="kcal")


def test_explicit_missing_key_is_an_error():
    with pytest.raises(DataError, match="'forces' not found"):
        read_structures(CARBON, forces_key="forces")


# ---- labels decided per frame, selections, units ---------------------------------------------

H2_WITH_FORCES = ("2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.1 pbc=\"F F F\"\n"
                  "H 0 0 0 0 0 0.5\nH 0 0 0.7 0 0 -0.5\n")
H2_WITHOUT_FORCES = "2\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0.75\n"
H2_WITHOUT_ENERGY = ("2\nProperties=species:S:1:pos:R:3:forces:R:3 pbc=\"F F F\"\n"
                     "H 0 0 0 0 0 0.4\nH 0 0 0.72 0 0 -0.4\n")


def test_first_frame_without_forces_follows_the_rule_of_every_frame(tmp_path):
    """Frame 0 lacking forces used to decide for the whole file: every frame's forces were
    dropped without a word. Now frame 0 is a frame like any other: named, as frame 1 would be."""
    p = write_xyz(tmp_path / "first.xyz", H2_WITHOUT_FORCES + H2_WITH_FORCES + H2_WITH_FORCES)
    with pytest.raises(DataError, match=r"first.xyz\[0\].*'forces' missing.*2 of the 3 frames have it"):
        read_structures(p)
    assert [s.forces for s in read_structures(p, forces_key="none")] == [None] * 3
    both = read_structures(p, index="1:")
    assert all(s.forces is not None for s in both)
    np.testing.assert_allclose(both[0].forces[0], [0, 0, 0.5])


def test_first_frame_without_energy_is_named(tmp_path):
    """The message used to be "no structure has an energy label" (from the shift fit), untrue
    for a file where only frame 0 lacks it."""
    p = write_xyz(tmp_path / "noE.xyz", H2_WITHOUT_ENERGY + H2_WITH_FORCES)
    with pytest.raises(DataError, match=r"noE.xyz\[0\].*'energy' missing.*1 of the 2 frames"):
        read_structures(p)
    assert [s.energy for s in read_structures(p, energy_key="none")] == [None, None]


def test_no_frame_with_forces_means_no_force_labels(tmp_path):
    p = write_xyz(tmp_path / "energies.xyz", H2_WITHOUT_FORCES * 3)
    assert [s.forces for s in read_structures(p)] == [None] * 3


@pytest.mark.parametrize("index", ["200:", "100", "50:50", "-1:0"])
def test_empty_selection_says_so(index):
    with pytest.raises(DataError, match=rf"rmd17_ethanol_100.xyz: index {index!r} selects no structures "
                                        r"\(the file has 100\)"):
        read_structures(ETHANOL, energy_unit="kcal/mol", index=index)


def test_empty_selection_of_npz(tmp_path, ethanol_structures):
    path = tmp_path / "five.npz"
    frames = ethanol_structures[:5]
    np.savez(path, z=frames[0].numbers, R=np.stack([s.positions for s in frames]), E=np.zeros(5))
    with pytest.raises(DataError, match=r"five.npz: index '7:' selects no structures \(the file has 5\)"):
        read_structures(path, index="7:")


@pytest.mark.parametrize("index", ["::0", "a:b", "1:2:3:4", ""])
def test_bad_index_is_a_data_error(index):
    with pytest.raises(DataError, match="index"):
        read_structures(ETHANOL, index=index)


@pytest.mark.parametrize("units, message", [
    ({"energy_unit": "kcal"}, r"unknown energy unit 'kcal'; known: eV, meV, kcal/mol"),
    ({"length_unit": "pm"}, r"unknown length unit 'pm'; known: Angstrom"),
    ({"force_unit": "eV"}, r"force unit must look like 'energy/length'"),
])
def test_unknown_units_are_data_errors_naming_the_file(units, message):
    with pytest.raises(DataError, match=r"rmd17_ethanol_100.xyz: " + message):
        read_structures(ETHANOL, **units)


def test_split_that_leaves_nothing_to_train_on_is_a_data_error():
    from gmnn.data import split_indices
    with pytest.raises(DataError, match=r"n_train \+ n_valid = 12 exceeds the 10 structures"):
        split_indices(10, 7, 5)
    with pytest.raises(DataError, match=r"n_valid = 10 leaves no structures to train on"):
        split_indices(10, 0, 10)
    with pytest.raises(DataError, match=r"n_valid = 12 leaves no structures to train on"):
        split_indices(10, -2, 12)
