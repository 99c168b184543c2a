"""gmnn._native (the C++ evaluator behind pair_style gmnn) against the Python calculator."""

import numpy as np
import pytest

from parity_testing import STRUCTURES, bad_model_files, reference

TOL_E = 1e-9   # eV, float64
TOL_F = 1e-9   # eV/Å


def test_metadata_is_read_from_the_model_file(native, model_files):
    m = native.Model(model_files["float64"])
    assert m.cutoff == pytest.approx(4.0, abs=0)
    assert list(m.atomic_numbers) == [1, 6, 8]
    assert m.dtype == "float64"
    assert m.format_version == native.FORMAT_VERSION == 3
    assert not m.has_uncertainty  # exported uncalibrated: gmnn/uncertainty none
    assert m.device == "cpu"
    assert native.Model(model_files["float32"]).dtype == "float32"


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_native_matches_python_calculator(native, model64, calculator, name):
    atoms = STRUCTURES[name]()
    ref = reference(calculator, atoms)
    m = native.Model(model64)
    cell = atoms.cell.array if atoms.pbc.any() else None
    out = m.compute(atoms.positions, atoms.numbers, cell, atoms.pbc)
    de = abs(out["energy"] - ref["energy"])
    df = np.abs(out["forces"] - ref["forces"]).max()
    dea = np.abs(out["atomic_energies"] - ref["energies"]).max()
    print(f"{name}: |dE| = {de:.2e} eV, max|dF| = {df:.2e} eV/A, max|dE_i| = {dea:.2e} eV, "
          f"max|F| = {np.abs(ref['forces']).max():.3f} eV/A, {out['n_edges']} edges")
    assert de < TOL_E, (out["energy"], ref["energy"])
    assert df < TOL_F, (out["forces"], ref["forces"])
    assert dea < TOL_E, (out["atomic_energies"], ref["energies"])
    if "stress" in ref:
        ds = np.abs(out["stress"] - ref["stress"]).max()
        assert ds < 1e-10, (out["stress"], ref["stress"])


def test_neighbor_list_matches_python_neighbor_list(native):
    from gmnn.neighbors import neighbor_list
    for name in ("small_cell", "triclinic", "cluster"):
        atoms = STRUCTURES[name]()
        cell = atoms.cell.array if atoms.pbc.any() else None
        c, n, v, _ = native.neighbor_list(atoms.positions, cell, atoms.pbc, 4.0)
        ref = neighbor_list(atoms.positions, 4.0, atoms.cell.array, atoms.pbc)

        def key(ci, ni, vi):
            return sorted(zip(ci.tolist(), ni.tolist(), np.round(vi, 8).tolist()))
        assert len(c) == len(ref.centers), (name, len(c), len(ref.centers))
        assert key(c, n, v) == key(ref.centers, ref.neighbors, ref.vectors), name


def test_float32_model_agrees_with_float64(native, model_files):
    atoms = STRUCTURES["triclinic"]()
    o64 = native.Model(model_files["float64"]).compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    o32 = native.Model(model_files["float32"]).compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    # absolute energies are ~ -1e4 eV, but the shifts are added in float64 (format 2): only the
    # network's part (a few eV) has float32 rounding
    print(f"|dE| = {abs(o32['energy'] - o64['energy']):.2e} eV of {o64['energy']:.1f} eV")
    assert abs(o32["energy"] - o64["energy"]) < 1e-4, (o32["energy"], o64["energy"])
    assert np.abs(o32["forces"] - o64["forces"]).max() < 1e-3


def test_format_1_model_file_still_loads(native):
    """A model file of format 1 (atomic energies in the model dtype) gives the Python
    calculator's results on the same file."""
    from gmnn.calculator import GMNNCalculator
    from gmnn_testing import FORMAT_1_MODEL
    m = native.Model(str(FORMAT_1_MODEL))
    assert m.format_version == 1 and m.dtype == "float32"
    atoms = STRUCTURES["triclinic"]()
    out = m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    ref = reference(GMNNCalculator(FORMAT_1_MODEL), atoms)
    assert abs(out["energy"] - ref["energy"]) < 2e-3, (out["energy"], ref["energy"])
    assert np.abs(out["forces"] - ref["forces"]).max() < 1e-4


def test_isolated_atom_gets_finite_empty_environment_energy(native, model64, calculator):
    from ase import Atoms
    atoms = Atoms("O", positions=[[0.0, 0.0, 0.0]])
    out = native.Model(model64).compute(atoms.positions, atoms.numbers)
    ref = reference(calculator, atoms)
    assert out["n_edges"] == 0
    assert np.isfinite(out["energy"]) and np.all(out["forces"] == 0.0)
    assert abs(out["energy"] - ref["energy"]) < TOL_E, (out["energy"], ref["energy"])
    # an atom with no neighbours inside a larger system gives the same energy
    far = Atoms("OH", positions=[[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    out2 = native.Model(model64).compute(far.positions, far.numbers)
    assert abs(out2["atomic_energies"][0] - out["energy"]) < 1e-12


def test_unknown_element_is_rejected(native, model64):
    with pytest.raises(ValueError, match="atomic number 7"):
        native.Model(model64).compute(np.zeros((1, 3)), np.array([7]))


# ---- bad model files -------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "garbage", "not_gmnn",
                                  "future_version", "real_units", "bad_dtype"])
def test_bad_model_file_gives_clear_error(native, model64, tmp_path, case):
    path, fragment = bad_model_files(tmp_path, model64)[case]
    with pytest.raises(RuntimeError, match=fragment) as info:
        native.Model(path)
    assert path in str(info.value)


def test_cuda_request_without_gpu_is_an_error(native, model64):
    if native.cuda_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(RuntimeError, match="no CUDA support or no GPU"):
        native.Model(model64, device="cuda")
    assert native.Model(model64, device="auto").device == "cpu"


@pytest.mark.parametrize("per_pass", [1, 3, 7])
def test_evaluation_in_blocks_of_atoms_gives_the_same_results(native, model64, per_pass):
    """atoms_per_pass > 0 splits the centres into blocks (bounded memory), same numbers."""
    atoms = STRUCTURES["triclinic"]()
    m = native.Model(model64)
    m.atoms_per_pass = 0  # all at once
    whole = m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    m.atoms_per_pass = per_pass
    assert m.atoms_per_pass == per_pass
    parts = m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    assert abs(parts["energy"] - whole["energy"]) < 1e-10, (parts["energy"], whole["energy"])
    assert np.abs(parts["forces"] - whole["forces"]).max() < 1e-12
    assert np.abs(parts["atomic_energies"] - whole["atomic_energies"]).max() < 1e-12
    assert np.abs(parts["virial"] - whole["virial"]).max() < 1e-12


def test_native_loader_verifies_the_checksum(tmp_path):
    """A weight byte changed inside the archive: the C++ loader refuses the file like Python does."""
    import zipfile

    import pytest

    native = pytest.importorskip("gmnn._native")
    from gmnn import build_model, export_model
    good = export_model(build_model(["H", "C"], hidden=(8, 8), dtype="float64"), tmp_path / "good.pt")
    native.Model(str(good), "cpu")  # loads
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("constants/1"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(item, data)
    with pytest.raises(Exception, match="checksum mismatch"):
        native.Model(str(bad), "cpu")


# ---- per-atom force uncertainty (format 3) -----------------------------------------------------


@pytest.mark.parametrize("per_pass", [0, 7])
def test_uncertainty_matches_python(native, calibrated_model, per_pass):
    """compute(uncertainty=True): sigma_F per atom as the Python calculator's forces_uncertainty
    on the same file (1e-10 relative), in one pass or blocks of 7 atoms; energies and forces as
    without it."""
    from gmnn.calculator import GMNNCalculator
    atoms = STRUCTURES["triclinic"]()
    calc = GMNNCalculator(calibrated_model)
    ref = reference(calc, atoms)
    ref_u = calc.results["forces_uncertainty"]
    m = native.Model(calibrated_model)
    assert m.has_uncertainty
    m.atoms_per_pass = per_pass
    plain = m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    out = m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, uncertainty=True)
    assert "forces_uncertainty" not in plain
    u = out["forces_uncertainty"]
    rel = np.abs(u - ref_u) / ref_u
    print(f"max rel |d sigma_F| = {rel.max():.2e}, sigma_F {u.min():.3f} .. {u.max():.3f} eV/A")
    assert u.shape == (len(atoms),) and rel.max() < 1e-10, (u, ref_u)
    assert abs(out["energy"] - ref["energy"]) < TOL_E
    assert abs(out["energy"] - plain["energy"]) < 1e-10
    assert np.abs(out["forces"] - plain["forces"]).max() < 1e-12
    # the raw entry point: a third element with uncertainty=True
    c, n, v, _ = native.neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, m.cutoff)
    species = np.array([m.atomic_numbers.index(z) for z in atoms.numbers])
    e, g, u_edges = m.evaluate_edges(v, c, n, species, len(atoms), uncertainty=True)
    assert len(m.evaluate_edges(v, c, n, species, len(atoms))) == 2
    assert np.abs(u_edges - ref_u).max() < 1e-10 * ref_u.max()


def test_uncertainty_of_a_model_without_it_is_a_clear_error(native, model64):
    from gmnn_testing import FORMAT_1_MODEL
    atoms = STRUCTURES["small_cell"]()
    for path, why in ((model64, "exported without calibration"), (str(FORMAT_1_MODEL), "format-1 file")):
        m = native.Model(path)
        assert not m.has_uncertainty
        m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)  # runs without it
        with pytest.raises(RuntimeError, match="has no calibrated uncertainty") as info:
            m.compute(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, uncertainty=True)
        assert path in str(info.value) and why in str(info.value) and "gmnn-calibrate" in str(info.value)


def test_inconsistent_uncertainty_metadata_is_refused(native, model64, tmp_path):
    """gmnn/uncertainty llpr on a module without forward_uncertainty (a format-1 module relabelled
    as format 3), or a value other than llpr/none: the C++ loader names the problem."""
    from gmnn_testing import FORMAT_1_MODEL
    from parity_testing import _write_variant
    relabelled = _write_variant(tmp_path, str(FORMAT_1_MODEL), "no_method.pt", format_version="3",
                                uncertainty="llpr")
    with pytest.raises(RuntimeError, match="no forward_uncertainty method"):
        native.Model(relabelled)
    odd = _write_variant(tmp_path, model64, "odd.pt", uncertainty="maybe")
    with pytest.raises(RuntimeError, match="bad gmnn/uncertainty 'maybe'"):
        native.Model(odd)
    assert native.Model(_write_variant(tmp_path, model64, "none.pt", uncertainty="none")).has_uncertainty is False
