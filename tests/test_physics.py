"""Energies, forces and stress of the model: finite differences, extensivity, periodicity."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from gmnn_testing import small_model
from gmnn.calculator import GMNNCalculator


def energy(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_forces_equal_minus_finite_difference_gradient(ethanol_structures):
    calc = GMNNCalculator(small_model())
    atoms = ethanol_structures[3].to_atoms()
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-5
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, a] += h
            minus.positions[i, a] -= h
            fd[i, a] = -(energy(calc, plus) - energy(calc, minus)) / (2 * h)
    np.testing.assert_allclose(forces, fd, atol=1e-7, rtol=1e-6)
    assert np.abs(forces).max() > 1e-2  # not a trivially flat model
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)  # translation invariance


def rattled_carbon(seed=0):
    atoms = bulk("C", "diamond", a=3.57, cubic=False) * (2, 2, 1)
    atoms.set_cell(atoms.cell.array + np.array([[0.0, 0.1, 0.0], [0.05, 0.0, 0.0], [0.0, 0.2, 0.0]]),
                   scale_atoms=True)  # triclinic
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_periodic_forces_and_stress_match_finite_differences():
    calc = GMNNCalculator(small_model(elements=("C",)))
    atoms = rattled_carbon()
    atoms.calc = calc
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    h = 1e-5
    for i, a in [(0, 0), (3, 2), (5, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, a] += h
        minus.positions[i, a] -= h
        fd = -(energy(calc, plus) - energy(calc, minus)) / (2 * h)
        assert abs(forces[i, a] - fd) < 1e-7, (forces[i, a], fd)
    fd_stress = np.zeros((3, 3))
    volume = atoms.get_volume()
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h / (2 if a != b else 1)
            plus, minus = atoms.copy(), atoms.copy()
            plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
            de = energy(calc, plus) - energy(calc, minus)
            fd_stress[a, b] = de / (2 * h) / volume / (2 if a != b else 1) * (2 if a != b else 1)
    np.testing.assert_allclose(stress, fd_stress, atol=1e-7)
    assert np.abs(stress).max() > 1e-3


def test_supercell_energy_is_extensive_even_for_cells_below_twice_the_cutoff():
    """A cell much smaller than 2 r_c (several images of each atom are neighbours) gives
    exactly 1/N of the energy of its N-fold supercell, with identical per-atom forces."""
    calc = GMNNCalculator(small_model(elements=("C",)))
    cell = rattled_carbon(seed=2)
    assert min(cell.cell.lengths()) < 2 * 5.0
    e1 = energy(calc, cell)
    big = cell * (3, 2, 2)
    big.calc = calc
    assert big.get_potential_energy() == pytest.approx(12 * e1, rel=1e-11, abs=1e-9)
    cell.calc = calc
    np.testing.assert_allclose(big.get_forces()[: len(cell)], cell.get_forces(), atol=1e-9)
    np.testing.assert_allclose(big.get_stress(), cell.get_stress(), atol=1e-9)


def test_energy_is_smooth_at_the_cutoff():
    """Two atoms: energy and force go continuously to the isolated-atom values at r_c."""
    model = small_model(elements=("C",))
    calc = GMNNCalculator(model)
    isolated = 2 * energy(calc, Atoms("C", positions=[[0, 0, 0]]))
    rc = model.cutoff
    e_in = energy(calc, Atoms("C2", positions=[[0, 0, 0], [rc - 1e-4, 0, 0]]))
    e_out = energy(calc, Atoms("C2", positions=[[0, 0, 0], [rc + 1e-4, 0, 0]]))
    assert e_out == pytest.approx(isolated, abs=1e-12)
    assert abs(e_in - isolated) < 1e-9


def test_isolated_atom_has_finite_shift_energy():
    model = small_model()
    calc = GMNNCalculator(model)
    e = energy(calc, Atoms("O", positions=[[0, 0, 0]]))
    assert np.isfinite(e)
    atoms = Atoms("OH", positions=[[0, 0, 0], [20, 0, 0]])
    atoms.calc = calc
    assert np.all(atoms.get_forces() == 0.0)


def test_float32_model_agrees_with_float64():
    m64 = small_model()
    m32 = small_model(dtype="float32")
    atoms = bulk("C", "diamond", a=3.57) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    atoms = Atoms("CH4", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89], [-0.36, -0.51, -0.89]])
    a64, a32 = atoms.copy(), atoms.copy()
    a64.calc, a32.calc = GMNNCalculator(m64), GMNNCalculator(m32)
    assert a32.get_potential_energy() == pytest.approx(a64.get_potential_energy(), abs=1e-4)
    np.testing.assert_allclose(a32.get_forces(), a64.get_forces(), atol=1e-4)


def test_float32_energy_of_a_hundred_thousand_atoms_does_not_drift(tmp_path):
    """The per-element shifts (-1029.4567 eV for carbon here) are added in float64 in a float32
    model: its 10^5-atom energy is the float64 model's to 1e-9 relative (0.1 eV of 1e8 eV),
    through the model object, its export and inference.predict. With float32 shifts it was 3.4e-8
    off (3.5 eV: the rounding of the shift, 10^5 times). A 1e-7 bound would not see that:
    float32 rounds any number by at most 6e-8 of itself."""
    from gmnn import export_model
    from gmnn.graph import GraphBatch
    from gmnn.inference import predict
    from gmnn.neighbors import neighbor_list
    from gmnn_testing import cheap_carbon_model, hundred_thousand_carbon_atoms
    atoms = hundred_thousand_carbon_atoms()
    m64, m32 = cheap_carbon_model("float64"), cheap_carbon_model("float32")
    assert m32.scale_shift.shift.dtype == torch.float64
    reference = energy(GMNNCalculator(m64), atoms)
    energies = {"model": energy(GMNNCalculator(m32), atoms),
                "export": energy(GMNNCalculator(export_model(m64, tmp_path / "m32.pt", dtype="float32")), atoms)}
    nl = neighbor_list(atoms.positions, m32.cutoff, atoms.cell.array, atoms.pbc)
    n = len(atoms)
    batch = GraphBatch(species=torch.zeros(n, dtype=torch.long), centers=torch.from_numpy(nl.centers),
                       neighbors=torch.from_numpy(nl.neighbors), edge_vectors=torch.from_numpy(nl.vectors),
                       atom_structure=torch.zeros(n, dtype=torch.long), n_atoms=torch.tensor([n]),
                       volume=torch.tensor([atoms.get_volume()]), energy=None, forces=None, force_mask=None)
    with torch.no_grad():
        energies["predict"] = float(predict(m32, batch, forces=False)["energy"][0])
    for name, e in energies.items():
        print(f"{name}: float32 {e:.6f} eV, float64 {reference:.6f} eV, relative {(e - reference) / reference:.2e}")
    for name, e in energies.items():
        assert abs(e - reference) < 1e-9 * abs(reference), (name, e, reference)
