"""Neighbour lists against brute force, for molecules and for small, skewed periodic cells."""
import itertools

import numpy as np
import pytest
from ase.build import bulk, molecule

from gmnn.neighbors import neighbor_list


def brute_force(positions, cutoff, cell, pbc):
    reps = [int(np.ceil(cutoff / (1.0 / np.linalg.norm(np.linalg.inv(cell)[:, k])))) + 1 if pbc[k] else 0
            for k in range(3)]
    pairs = set()
    for shift in itertools.product(*[range(-r, r + 1) for r in reps]):
        offset = np.array(shift) @ cell
        for i, j in itertools.product(range(len(positions)), repeat=2):
            d = positions[j] + offset - positions[i]
            r = np.linalg.norm(d)
            if 0 < r < cutoff:
                pairs.add((i, j) + tuple(np.round(d, 8)))
    return pairs


BACKENDS = pytest.mark.parametrize("backend", ["vesin", "ase"])


def as_set(nl):
    return {(int(i), int(j)) + tuple(np.round(d, 8)) for i, j, d in zip(nl.centers, nl.neighbors, nl.vectors)}


@BACKENDS
@pytest.mark.parametrize("cutoff", [3.0, 5.0])
def test_small_triclinic_cell_matches_brute_force(cutoff, backend):
    atoms = bulk("Si", "diamond", a=3.0)  # primitive cell, far smaller than 2 * cutoff
    atoms.rattle(0.05, seed=0)
    nl = neighbor_list(atoms.positions, cutoff, atoms.cell.array, atoms.pbc, backend=backend)
    ref = brute_force(atoms.positions, cutoff, atoms.cell.array, atoms.pbc)
    assert as_set(nl) == ref
    assert len(nl.centers) == len(ref) > 20


@BACKENDS
def test_molecule_matches_brute_force(backend):
    atoms = molecule("CH3CH2OH")
    nl = neighbor_list(atoms.positions, 2.0, backend=backend)
    ref = brute_force(atoms.positions, 2.0, np.eye(3), [False] * 3)
    assert as_set(nl) == ref


@BACKENDS
def test_slab_periodic_in_two_directions(backend):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
    atoms.pbc = [True, True, False]
    nl = neighbor_list(atoms.positions, 4.0, atoms.cell.array, atoms.pbc, backend=backend)
    assert as_set(nl) == brute_force(atoms.positions, 4.0, atoms.cell.array, atoms.pbc)


@BACKENDS
def test_edges_are_symmetric_and_linear_in_size(backend):
    atoms = bulk("C", "diamond", a=3.57, cubic=True)
    n1 = len(neighbor_list(atoms.positions, 4.0, atoms.cell.array, atoms.pbc, backend=backend).centers)
    big = atoms * (4, 4, 4)
    nl = neighbor_list(big.positions, 4.0, big.cell.array, big.pbc, backend=backend)
    assert np.all(np.diff(nl.centers) >= 0)  # sorted by centre: the calculator's atom blocks need it
    assert len(nl.centers) == 64 * n1
    forward = set(zip(nl.centers.tolist(), nl.neighbors.tolist()))
    assert forward == set(zip(nl.neighbors.tolist(), nl.centers.tolist()))


def test_nan_positions_are_rejected():
    with pytest.raises(ValueError, match="non-finite positions"):
        neighbor_list(np.array([[0, 0, 0], [np.nan, 0, 0]]), 5.0)


def test_coincident_atoms_are_rejected_by_name():
    with pytest.raises(ValueError, match="atoms 0 and 1 are at the same position"):
        neighbor_list(np.array([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]]), 5.0)
