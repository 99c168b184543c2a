"""Property-based tests (hypothesis): random molecules and periodic cells keep the model's
invariances and energy/force consistency; random mutations of a model file never crash the
loader (a clear ModelFileError/CheckpointError or a valid model). Bounded in examples and time."""
import numpy as np
import pytest
import torch
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from gmnn.calculator import GMNNCalculator
from gmnn_testing import small_model

MODEL = small_model(elements=("H", "C", "O"), hidden=(16, 16))
# derandomize: CI runs the same examples every time (a new failure shows up in a change, not at random)
CALC_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def molecules(draw, periodic=False):
    n = draw(st.integers(min_value=1, max_value=10))
    numbers = draw(st.lists(st.sampled_from([1, 6, 8]), min_size=n, max_size=n))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0.0, 4.0, size=(n, 3))
    # keep atoms at least 0.7 A apart (chemistry); coincident atoms are a tested error elsewhere
    for i in range(1, n):
        while np.min(np.linalg.norm(positions[:i] - positions[i], axis=1)) < 0.7:
            positions[i] = rng.uniform(0.0, 4.0, size=3)
    atoms = Atoms(numbers=numbers, positions=positions)
    if periodic:
        cell = np.diag(rng.uniform(3.0, 7.0, size=3)) + rng.uniform(-0.5, 0.5, size=(3, 3))
        atoms.set_cell(cell)
        atoms.pbc = True
        atoms.wrap()
    return atoms, seed


def evaluate(atoms):
    atoms = atoms.copy()
    atoms.calc = GMNNCalculator(MODEL)
    return atoms.get_potential_energy(), atoms.get_forces(), atoms


@CALC_SETTINGS
@given(molecules())
def test_random_molecules_rotation_translation_permutation(sample):
    atoms, seed = sample
    e, f, _ = evaluate(atoms)
    assert np.isfinite(e) and np.all(np.isfinite(f))
    assert np.allclose(f.sum(axis=0), 0.0, atol=1e-9)  # no net force on a free molecule
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed % 2**32).as_matrix()
    perm = rng.permutation(len(atoms))
    moved = Atoms(numbers=atoms.numbers[perm], positions=atoms.positions[perm] @ rot.T + rng.normal(size=3) * 3)
    e2, f2, _ = evaluate(moved)
    assert e2 == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(f2, f[perm] @ rot.T, atol=1e-9)


@CALC_SETTINGS
@given(molecules(periodic=True))
def test_random_cells_forces_are_the_energy_gradient(sample):
    atoms, seed = sample
    e, f, _ = evaluate(atoms)
    rng = np.random.default_rng(seed)
    i, a = int(rng.integers(len(atoms))), int(rng.integers(3))
    h = 1e-5
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, a] += h
    minus.positions[i, a] -= h
    fd = -(evaluate(plus)[0] - evaluate(minus)[0]) / (2 * h)
    assert f[i, a] == pytest.approx(fd, abs=1e-6)
    # periodic images: the same structure shifted by a lattice vector is the same structure
    shifted = atoms.copy()
    shifted.positions[0] += atoms.cell[int(rng.integers(3))]
    assert evaluate(shifted)[0] == pytest.approx(e, abs=1e-9)


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    from gmnn import export_model
    path = export_model(MODEL, tmp_path_factory.mktemp("fuzz") / "m.pt", dtype="float64")
    return path.read_bytes()


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_model_files_never_crash_the_loader(tmp_path_factory, model_bytes, data):
    from gmnn.checkpoint import CheckpointError
    from gmnn.loading import load
    from gmnn.model_file import ModelFileError
    blob = bytearray(model_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero_run"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            k = data.draw(st.integers(0, len(blob) - 1))
            blob[k] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        start = data.draw(st.integers(0, len(blob) - 1))
        blob[start:start + data.draw(st.integers(1, 4096))] = b"\0" * len(blob[start:start + 4096])
    path = tmp_path_factory.mktemp("mut") / "m.pt"
    path.write_bytes(bytes(blob))
    try:
        loaded = load(path)
    except (ModelFileError, CheckpointError):
        return  # a clear error naming the file
    # bytes outside the parts that matter: the model must still work exactly
    atoms = Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                    [-0.36, -0.51, -0.89]])
    atoms.calc = GMNNCalculator(loaded)
    reference = atoms.copy()
    reference.calc = GMNNCalculator(MODEL)
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-9)
