"""gmnn.md_analysis against structures whose answers are known: an ideal gas (g = 1), an fcc
crystal (first shell of 12 at a/sqrt 2, in a cubic and in a triclinic cell), a hydrogen-bonded
ethanol pair, molecules split by the periodic boundary, and a random walk with a known D."""
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read

from gmnn.md_analysis import (broken_molecules, density_g_cm3, hydrogen_bonds, molecule_ids, radial_distribution,
                              self_diffusion, unwrapped_centres)


def test_ideal_gas_rdf_is_one_and_its_coordination_the_density_times_volume():
    rng = np.random.default_rng(0)
    side, n = 20.0, 400
    frames = [Atoms("Ar" * n, positions=rng.uniform(0, side, (n, 3)), cell=[side] * 3, pbc=True) for _ in range(20)]
    rdf = radial_distribution(frames, "Ar", "Ar", r_max=9.5, n_bins=19)
    assert np.all(np.abs(rdf.g[4:] - 1.0) < 0.05), rdf.g
    expected = (n - 1) / side ** 3 * 4 / 3 * np.pi * rdf.edges[1:] ** 3
    assert np.allclose(rdf.coordination[4:], expected[4:], rtol=0.03)


@pytest.mark.parametrize("cell", ["cubic", "triclinic"])
def test_fcc_first_shell_is_twelve_at_a_over_sqrt2(cell):
    a = 3.6
    crystal = bulk("Cu", "fcc", a=a, cubic=True).repeat(4) if cell == "cubic" else bulk("Cu", "fcc", a=a).repeat(6)
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(5):
        frame = crystal.copy()
        frame.positions += rng.normal(0, 0.05, frame.positions.shape)
        frames.append(frame)
    rdf = radial_distribution(frames, "Cu", "Cu", r_max=4.0 if cell == "triclinic" else 6.0, n_bins=200)
    peak, minimum, n_first = rdf.first_peak()
    assert peak == pytest.approx(a / np.sqrt(2), abs=0.05)
    assert a / np.sqrt(2) < minimum < a
    assert n_first == pytest.approx(12.0)


def test_rdf_refuses_a_range_that_would_miss_images():
    with pytest.raises(ValueError, match="half the cell"):
        radial_distribution([bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)], "Cu", "Cu", r_max=4.0)


DIMERS = Path(__file__).resolve().parents[1] / "examples" / "liquid_ethanol" / "data" / "ethanol_dimers.xyz"


def ethanol_pair():
    """The first hydrogen-bonded ethanol dimer of the repository's xTB droplet data, centred in a
    30 Å box: (atoms, donor O, donor H, acceptor O), found by plain distances."""
    pair = next(a for a in read(DIMERS, ":") if a.info["kind"] == "hbond")
    pair.set_cell([30.0] * 3)
    pair.pbc = True
    pair.translate([15.0] * 3 - pair.get_center_of_mass())
    o = [k for k in range(18) if pair[k].symbol == "O"]
    h = [k for k in range(18) if pair[k].symbol == "H"]
    d = pair.get_all_distances()
    donor_h, acceptor = min(((i, j) for i in h for j in o if (i < 9) != (j < 9)), key=lambda ij: d[ij])
    assert d[donor_h, acceptor] == pytest.approx(pair.info["hbond_distance"], abs=1e-4)
    donor = o[0] if acceptor == o[1] else o[1]
    return pair, donor, donor_h, acceptor


def test_hydrogen_bond_of_an_ethanol_pair_by_distance_and_angle():
    pair, donor, h, acceptor = ethanol_pair()
    molecules = molecule_ids(pair)
    assert list(molecules) == [0] * 9 + [1] * 9
    accepting = slice(0, 9) if acceptor < 9 else slice(9, 18)
    x = pair.positions

    def moved(translate=0.0, rotate=0.0):
        """the acceptor's molecule pushed along D->A, or turned about the donor O (normal to D-H, D-A)"""
        atoms = pair.copy()
        da = (x[acceptor] - x[donor]) / np.linalg.norm(x[acceptor] - x[donor])
        atoms.positions[accepting] += translate * da
        if rotate:
            axis = np.cross(x[h] - x[donor], da)
            part = atoms[accepting]
            part.rotate(rotate, axis, center=x[donor])
            atoms.positions[accepting] = part.positions
        return atoms

    o_o = pair.get_distance(donor, acceptor)
    assert o_o < 3.5
    counts = hydrogen_bonds([pair, moved(translate=3.55 - o_o), moved(rotate=45.0), moved(rotate=-45.0)], molecules)
    assert list(counts) == [1, 0, 0, 0]


def test_molecules_split_by_the_boundary_are_found_whole_and_centred_right():
    pair = ethanol_pair()[0]
    shifted = pair.copy()
    shifted.translate([14.0, 0.0, 0.0])  # moves the molecules across the x boundary
    shifted.wrap()
    assert np.ptp(shifted.positions[:, 0]) > 20.0  # split by the wrap
    molecules = molecule_ids(shifted)
    assert list(molecules) == [0] * 9 + [1] * 9
    centres = unwrapped_centres([shifted], molecules)[0]
    expected = unwrapped_centres([pair], molecule_ids(pair))[0] + [14.0, 0.0, 0.0]
    assert np.allclose(np.mod(centres - expected + 15.0, 30.0) - 15.0, 0.0, atol=1e-9)


def test_a_stretched_bond_counts_as_a_broken_molecule():
    pair = ethanol_pair()[0]
    molecules = molecule_ids(pair)
    assert broken_molecules(pair, molecules) == 0
    o = 2 if pair[2].symbol == "O" else [k for k in range(9) if pair[k].symbol == "O"][0]
    carbon = min((k for k in range(9) if pair[k].symbol == "C"), key=lambda k: pair.get_distance(o, k))
    stretched = pair.copy()
    stretched.set_distance(carbon, o, 2.0, fix=0, mask=[k == o or (pair[k].symbol == "H" and pair.get_distance(o, k) < 1.2)
                                                       for k in range(18)])
    assert broken_molecules(stretched, molecules) == 1
    assert int(molecule_ids(stretched).max()) + 1 == 3


def test_self_diffusion_of_a_random_walk_wrapped_into_the_box():
    rng = np.random.default_rng(2)
    d_true = 1.0e-9  # m^2/s = 0.1 Å^2/ps
    dt_ps, n_frames, n = 0.5, 400, 1000
    step = np.sqrt(2 * d_true * 1e8 * dt_ps)  # Å per component
    path = np.cumsum(rng.normal(0, step, (n_frames, n, 3)), axis=0) + rng.uniform(0, 15, (1, n, 3))
    frames = []
    for x in path:
        atoms = Atoms("Ar" * n, positions=x, cell=[15.0] * 3, pbc=True)
        atoms.wrap()
        frames.append(atoms)
    centres = unwrapped_centres(frames, np.arange(n))
    assert np.allclose(centres - centres[0], path - path[0], atol=1e-9)
    diffusion = self_diffusion(centres, dt_ps)
    assert diffusion.coefficient_m2_s == pytest.approx(d_true, rel=0.06)
    assert diffusion.corrected(298.0, 1.074e-3, 15.0) > diffusion.coefficient_m2_s


def test_density_of_liquid_water_box():
    water = molecule("H2O")
    box = Atoms()
    for k in range(27):
        w = water.copy()
        w.translate(3.1 * np.array([k % 3, (k // 3) % 3, k // 9]))
        box += w
    box.set_cell([9.32] * 3)
    assert density_g_cm3(box) == pytest.approx(27 * 18.015 / 6.02214076e23 / (9.32e-8) ** 3, rel=1e-4)
