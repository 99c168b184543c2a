"""gmnn.interaction: interaction energies and forces of clusters against a pair potential, whose
interaction is exactly the sum over pairs of atoms in different molecules."""
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.lj import LennardJones

from gmnn.interaction import fragments, interaction

SIGMA, EPSILON, RC = 2.0, 0.01, 8.0


def lj_pair(r):
    """Energy and dE/dr of ASE's LennardJones (shifted to zero at RC, smooth=False)."""
    s6 = (SIGMA / r) ** 6
    shift = 4 * EPSILON * ((SIGMA / RC) ** 12 - (SIGMA / RC) ** 6)
    return 4 * EPSILON * (s6 ** 2 - s6) - shift, 4 * EPSILON * (-12 * s6 ** 2 + 6 * s6) / r


def trimer():
    parts = []
    for k, shift in enumerate(([0, 0, 0], [5.2, 0.4, 0.2], [0.3, 5.0, -0.5])):
        m = molecule("CH3CH2OH")
        m.rotate(40 * k, "z", center="COM")
        m.translate(shift)
        parts.append(m)
    return parts[0] + parts[1] + parts[2]


def energy_forces(atoms):
    atoms = atoms.copy()
    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC)
    return atoms.get_potential_energy(), atoms.get_forces()


def test_interaction_is_the_sum_over_intermolecular_pairs():
    cluster = trimer()
    parts = fragments(cluster)
    assert [len(p) for p in parts] == [9, 9, 9]
    labels = [energy_forces(p) for p in parts[::-1]]  # any order
    got = interaction(*energy_forces(cluster), parts[::-1], [e for e, _ in labels], [f for _, f in labels])
    molecule_of = np.repeat([0, 1, 2], 9)
    energy, forces = 0.0, np.zeros((len(cluster), 3))
    for i in range(len(cluster)):
        for j in range(i + 1, len(cluster)):
            d = cluster.positions[j] - cluster.positions[i]
            r = np.linalg.norm(d)
            if molecule_of[i] != molecule_of[j] and r < RC:
                e, de = lj_pair(r)
                energy += e
                forces[i] += de * d / r
                forces[j] -= de * d / r
    assert abs(energy) > 1e-2 and np.abs(forces).max() > 1e-2  # the molecules do interact
    assert got.energy == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(got.forces, forces, atol=1e-10)


def test_fragments_read_back_from_extended_xyz(tmp_path):
    """ASE reads info["atoms"] = "0,1,..." back as an integer array; both forms work."""
    from ase.io import read, write
    cluster = trimer()
    write(tmp_path / "parts.xyz", fragments(cluster))
    parts = read(tmp_path / "parts.xyz", ":")
    assert not isinstance(parts[0].info["atoms"], str)
    labels = [energy_forces(p) for p in parts]
    got = interaction(*energy_forces(cluster), parts, [e for e, _ in labels], [f for _, f in labels])
    ref = interaction(*energy_forces(cluster), fragments(cluster), [e for e, _ in labels], [f for _, f in labels])
    assert got.energy == ref.energy and np.array_equal(got.forces, ref.forces)


def test_fragments_must_cover_the_cluster_once():
    cluster = trimer()
    parts = fragments(cluster)
    labels = [energy_forces(p) for p in parts]
    with pytest.raises(ValueError, match="in no fragment"):
        interaction(*energy_forces(cluster), parts[:2], [e for e, _ in labels[:2]], [f for _, f in labels[:2]])
    with pytest.raises(ValueError, match="overlap"):
        interaction(*energy_forces(cluster), parts + parts[:1], [e for e, _ in labels] + [labels[0][0]],
                    [f for _, f in labels] + [labels[0][1]])
    cluster.pbc = True
    cluster.cell = [30, 30, 30]
    with pytest.raises(ValueError, match="non-periodic"):
        fragments(cluster)
