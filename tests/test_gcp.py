"""gmnn.gcp (geometrical counterpoise) against the reference program's own test value and finite
differences, and gmnn.levels' ghost atoms (the counterpoise it stands in for) on a cheap level."""
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from gmnn import gcp

# grimme-lab/gcp test/test_gcp_dft_methods.f90: "dft/def2-svp" on MB16-43 molecule 17 (mstore;
# bohr) gives 6.8082018400795294e-2 Hartree. Mg, B, Si and F exercise the 3s and 2s-3s overlaps.
MB16_43_17 = (["Mg", "B", "H", "C", "Si", "B", "F", "F", "H", "H", "F", "H", "H", "O", "H", "H"], [
    2.68460861953273, -1.46442870252660, 1.67856153340039, -0.18053173984261, -3.96944005202894, -0.80661420861966,
    -0.58984435587144, -5.98708837691298, -1.71743303841248, 1.07719032312989, -1.76303169348468, -2.22950669619910,
    0.24421210314383, 1.76887707010948, -4.26437232785349, -1.64589939447879, -0.90586156069035, -2.45065764617243,
    0.71078922997216, 0.88479326169415, 3.64517056373104, 5.77984092031648, -2.28654280723977, 2.67325530102119,
    -3.50012299703202, -1.32272929604435, -1.24933974739626, -0.52632555428452, -3.77091486672575, 1.47071730349011,
    -0.27536787387566, 4.17239735599888, -2.08796280751818, -1.56874517509641, 4.33699624911296, 0.52992881707066,
    -1.79332867160074, 5.69507449430072, 3.22335048552804, -2.07387284201988, 4.10380585322630, 2.35332246894739,
    -0.64011933245457, 2.42620166307914, 3.12632079492992, 2.29751674046149, -1.91810859186826, -3.89474079594712])
REFERENCE_HARTREE = 6.8082018400795294e-2


def test_energy_matches_the_reference_programs_test_value():
    symbols, bohr = MB16_43_17
    energy, _ = gcp.energy_and_forces([atomic_numbers[s] for s in symbols],
                                      np.reshape(bohr, (-1, 3)) * gcp.BOHR, "dft/def2-svp")
    # the reference sums a 13-term series for nearly equal exponents; quadrature here: ~2e-9
    assert energy / gcp.HARTREE == pytest.approx(REFERENCE_HARTREE, abs=1e-8)


def _dimer(separation: float):
    a = molecule("CH3CH2OH")
    b = a.copy()
    b.rotate(90, "z")
    b.positions += [separation, 0.4, 0.2]
    return a + b


@pytest.mark.parametrize("parameters", sorted(gcp.PARAMETERS))
def test_forces_are_minus_the_gradient(parameters):
    atoms = _dimer(3.6)
    _, forces = gcp.energy_and_forces(atoms.numbers, atoms.positions, parameters)
    h, rng = 1e-4, np.random.default_rng(0)
    for atom, axis in zip(rng.choice(len(atoms), 6, replace=False), rng.integers(0, 3, 6)):
        energies = []
        for step in (h, -h):
            moved = atoms.positions.copy()
            moved[atom, axis] += step
            energies.append(gcp.energy_and_forces(atoms.numbers, moved, parameters)[0])
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-7)
    assert np.abs(forces).max() > 1e-3
    assert np.abs(forces.sum(axis=0)).max() < 1e-10  # no net force on an isolated structure


def test_the_correction_repels_close_molecules_and_vanishes_apart():
    alone = 2 * gcp.energy_and_forces(*_parts(_dimer(3.6)))[0]
    near = gcp.energy_and_forces(_dimer(3.6).numbers, _dimer(3.6).positions)[0] - alone
    far = gcp.energy_and_forces(_dimer(20.0).numbers, _dimer(20.0).positions)[0] - alone
    assert 0.02 < near < 0.5     # eV: the BSSE of an H-bonded pair in def2-SVP is ~0.1 eV
    assert abs(far) < 1e-6


def _parts(atoms):
    return atoms.numbers[:9], atoms.positions[:9]


def test_corrected_adds_the_correction_once():
    atoms = _dimer(3.6)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    out = gcp.corrected(atoms, "gga/def2-svp")
    energy, forces = gcp.energy_and_forces(atoms.numbers, atoms.positions, "gga/def2-svp")
    assert out.get_potential_energy() == pytest.approx(-1.0 + energy)
    np.testing.assert_allclose(out.get_forces(), forces)
    with pytest.raises(ValueError, match="already carry gCP"):
        gcp.corrected(out)


def test_elements_beyond_argon_are_refused():
    with pytest.raises(ValueError, match="H-Ar"):
        gcp.energy_and_forces([6, 35], [[0, 0, 0], [1.9, 0, 0]])


def test_ghost_atoms_lower_a_molecules_energy_near_and_not_far():
    """Counterpoise with gmnn.levels: a molecule in its partner's basis is lower in energy (the
    BSSE), by nothing once the partner's basis functions are far away."""
    pytest.importorskip("pyscf")
    from gmnn.levels import Level, compute
    level = Level.parse("hf/sto-3g")
    water = molecule("H2O")
    alone, _ = compute(water.numbers, water.positions, level, forces=False)
    for shift, bounds in ((2.8, (1e-3, 0.1)), (30.0, (-1e-7, 1e-7))):
        partner = water.copy()
        partner.positions += [shift, 0, 0]
        pair = water + partner
        in_pair_basis, _ = compute(pair.numbers, pair.positions, level, forces=False, ghosts=[0, 0, 0, 1, 1, 1])
        assert bounds[0] < alone - in_pair_basis < bounds[1]
