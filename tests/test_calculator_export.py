"""ASE calculator (from object, checkpoint and exported file; in blocks of atoms, up to 10^5
atoms), MD and optimisation with it, and the exported model file's metadata and error handling."""
import zipfile

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS

from gmnn import export_model
from gmnn.calculator import GMNNCalculator
from gmnn.checkpoint import CheckpointError, save_checkpoint
from gmnn.loading import read_metadata
from gmnn.model_file import ModelFileError
from gmnn_testing import small_model


@pytest.fixture
def model_files(tmp_path):
    model = small_model()
    ckpt = tmp_path / "model.ckpt"
    save_checkpoint(ckpt, {"model": model.checkpoint_state()})
    pt = export_model(model, tmp_path / "model.pt", dtype="float64")
    return model, ckpt, pt


def test_object_checkpoint_and_export_give_the_same_results(model_files, ethanol_structures):
    model, ckpt, pt = model_files
    atoms = ethanol_structures[5].to_atoms()
    results = []
    for source in (model, ckpt, pt):
        a = atoms.copy()
        a.calc = GMNNCalculator(source)
        results.append((a.get_potential_energy(), a.get_forces(), a.calc.results["energies"]))
    for e, f, ea in results[1:]:
        assert e == pytest.approx(results[0][0], abs=1e-10)
        np.testing.assert_allclose(f, results[0][1], atol=1e-10)
        np.testing.assert_allclose(ea, results[0][2], atol=1e-10)
    assert results[0][2].sum() == pytest.approx(results[0][0], abs=1e-10)


# ---- atoms per pass, large structures -----------------------------------------------------

@pytest.mark.parametrize("atoms", [molecule("CH3CH2OH"), bulk("C", "diamond", a=3.57, cubic=True) * (2, 2, 2)],
                         ids=["molecule", "periodic"])
def test_calculator_atom_blocks_do_not_change_results(atoms):
    """Evaluating 5 atoms per pass (neighbours outside the block renumbered as ghosts) gives
    the one-pass energies, forces and stress."""
    atoms = atoms.copy()
    atoms.rattle(0.05, seed=3)
    model = small_model()
    results = []
    for per_pass in (5, 100000):
        atoms.calc = GMNNCalculator(model, atoms_per_pass=per_pass)
        props = [atoms.get_potential_energies(), atoms.get_forces()]
        if atoms.pbc.all():
            props.append(atoms.get_stress())
        results.append(props)
    for blocked, whole in zip(*results):
        np.testing.assert_allclose(blocked, whole, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="atoms_per_pass"):
        GMNNCalculator(model, atoms_per_pass=0)


def test_structure_of_a_hundred_thousand_atoms():
    """10^5 atoms through the ASE calculator in bounded memory (blocks of 2048 atoms, calculator.ATOMS_PER_PASS): a perfect
    diamond crystal has the same energy per atom as its 8-atom cell and zero forces."""
    model = small_model(elements=("C",), cutoff=2.0, hidden=(8,))  # 4 neighbours: the test is about size
    cell = bulk("C", "diamond", a=3.57, cubic=True)
    cell.calc = GMNNCalculator(model)
    per_atom = cell.get_potential_energy() / len(cell)
    big = cell * (23, 23, 24)
    assert len(big) == 101568
    big.calc = GMNNCalculator(model)
    assert big.get_potential_energy() / len(big) == pytest.approx(per_atom, rel=1e-12)
    assert np.abs(big.get_forces()).max() < 1e-10
    np.testing.assert_allclose(big.get_potential_energies(), per_atom, rtol=1e-12)


def test_export_metadata(model_files):
    _, _, pt = model_files
    meta = read_metadata(pt)
    assert meta["format_version"] == "3"
    assert meta["uncertainty"] == "none"  # an untrained model: nothing calibrated it
    assert meta["atomic_numbers"] == "1 6 8"
    assert float(meta["cutoff"]) == 5.0
    assert meta["dtype"] == "float64" and meta["units"] == "metal"


def test_float32_export_of_a_float64_model(tmp_path, ethanol_structures):
    model = small_model()
    pt = export_model(model, tmp_path / "m32.pt", dtype="float32")
    assert read_metadata(pt)["dtype"] == "float32"
    a64, a32 = ethanol_structures[0].to_atoms(), ethanol_structures[0].to_atoms()
    a64.calc, a32.calc = GMNNCalculator(model), GMNNCalculator(pt)
    assert a32.get_potential_energy() == pytest.approx(a64.get_potential_energy(), abs=2e-4)
    np.testing.assert_allclose(a32.get_forces(), a64.get_forces(), atol=1e-4)


def test_nve_md_with_the_calculator_conserves_energy(trained_ethanol_model, ethanol_structures):
    model = trained_ethanol_model
    atoms = ethanol_structures[0].to_atoms()
    atoms.calc = GMNNCalculator(model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    total = lambda: atoms.get_potential_energy() + atoms.get_kinetic_energy()
    e0 = total()
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(total()), interval=10)
    dyn.run(200)
    drift = max(abs(e - e0) for e in energies)
    assert drift < 2e-3, drift
    assert atoms.get_kinetic_energy() > 0.0


def test_optimisation_lowers_energy_and_forces(trained_ethanol_model, ethanol_structures):
    model = trained_ethanol_model
    atoms = ethanol_structures[0].to_atoms()
    atoms.calc = GMNNCalculator(model)
    e0, f0 = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < min(0.05 + 1e-9, f0)


def test_bad_model_files_give_clear_errors(tmp_path, model_files):
    _, ckpt, pt = model_files
    with pytest.raises(ModelFileError, match="not found"):
        GMNNCalculator(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises((ModelFileError, CheckpointError), match="corrupt or truncated"):
        GMNNCalculator(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises((ModelFileError, CheckpointError)):
        GMNNCalculator(empty)
    foreign = tmp_path / "foreign.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    with pytest.raises(ModelFileError, match="not a gmnn model"):
        read_metadata(foreign)
    future = tmp_path / "future.pt"
    with zipfile.ZipFile(pt) as src, zipfile.ZipFile(future, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/gmnn/format_version"):
                data = b"99"
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="format version 99 is newer"):
        read_metadata(future)


def test_unknown_element_in_calculator(model_files):
    from ase import Atoms
    model, _, _ = model_files
    atoms = Atoms("NH3", positions=np.random.default_rng(0).normal(size=(4, 3)))
    atoms.calc = GMNNCalculator(model)
    with pytest.raises(ValueError, match="not all known to the model"):
        atoms.get_potential_energy()


def test_non_text_metadata_is_a_clear_error(tmp_path, model_files):
    """Found by the fuzz test: a corrupt byte in a metadata entry raised UnicodeDecodeError."""
    _, _, pt = model_files
    bad = tmp_path / "bad_meta.pt"
    with zipfile.ZipFile(pt) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/gmnn/cutoff"):
                data = b"\xae" + data[1:]
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="corrupt gmnn metadata"):
        read_metadata(bad)
