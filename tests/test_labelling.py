"""gmnn-label: numbers equal PySCF called directly; an interrupted run resumes with no
duplicate and no lost structure; the level of theory is recorded in the file."""
import numpy as np
import pytest
from ase import Atoms, units

from gmnn.data import read_structures
from gmnn.labelling import Level, label_structures, read_done

pyscf = pytest.importorskip("pyscf")


def water(k):
    """Small real molecule with distinct geometries (k-th bend/stretch)."""
    angle = np.deg2rad(100.0 + 3.0 * k)
    r = 0.95 + 0.01 * k
    return Atoms("OH2", positions=[[0, 0, 0], [r, 0, 0], [r * np.cos(angle), r * np.sin(angle), 0]])


def test_hf_sto3g_matches_pyscf_called_directly(tmp_path):
    from pyscf import gto, scf
    out = tmp_path / "w.xyz"
    label_structures([water(0), water(1)], out, Level.parse("hf/sto-3g"), forces=True, progress=False)
    got = read_structures(out)
    got.sort(key=lambda s: s.positions[1, 0])
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip("OHH", water(1).positions)], basis="sto-3g",
                unit="Angstrom", verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    e = mf.kernel() * units.Hartree
    f = -mf.nuc_grad_method().kernel() * units.Hartree / units.Bohr
    assert got[1].energy == pytest.approx(e, abs=1e-7)
    np.testing.assert_allclose(got[1].forces, f, atol=1e-6)
    assert "level=hf/sto-3g" in out.read_text().splitlines()[1]


def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path):
    out = tmp_path / "w.xyz"
    level = Level.parse("hf/sto-3g")
    molecules = [water(k) for k in range(6)]
    label_structures(molecules, out, level, forces=False, indices=[0, 3], progress=False)
    text = out.read_text()
    # a run killed while appending structure 5: a torn frame at the end of the file
    torn = text.splitlines(keepends=True)[:3]
    out.write_text(text + "".join(torn)[:-10])
    assert sorted(read_done(out, level)) == [0, 3]
    new = label_structures(molecules, out, level, forces=False, workers=2, progress=False)
    assert new == 4
    done = read_done(out, level)
    assert done == list(range(6))  # each exactly once, and in input order once complete
    assert len(read_structures(out)) == 6
    with pytest.raises(ValueError, match="another level of theory"):
        label_structures(molecules, out, Level.parse("hf/3-21g"), forces=False, progress=False)


def test_level_strings():
    assert Level.parse("CCSD(T)/cc-pVDZ").name == "ccsd(t)/cc-pvdz"
    assert Level.parse("gfn2-xtb").basis is None
    with pytest.raises(ValueError, match="method/basis"):
        Level.parse("pbe")


def test_sample_md_with_xtb_draws_distinct_configurations(tmp_path):
    pytest.importorskip("tblite")
    import ase.io
    from gmnn.sampling import sample_md
    start = tmp_path / "start.xyz"
    ase.io.write(start, water(0))
    n = sample_md(start, tmp_path / "samples.xyz", "gfn2-xtb", temperature=500.0, samples=4, stride=10,
                  equilibration=10, seed=3)
    frames = ase.io.read(tmp_path / "samples.xyz", index=":")
    assert n == len(frames) == 4
    assert frames[0].info["sampler"] == "gfn2-xtb" and frames[0].info["seed"] == 3
    moved = [np.abs(frames[k].positions - frames[k + 1].positions).max() for k in range(3)]
    assert min(moved) > 1e-3  # MD moved the atoms between samples
    bonds = [np.linalg.norm(f.positions[1] - f.positions[0]) for f in frames]
    assert 0.8 < min(bonds) and max(bonds) < 1.3  # a physical O-H bond, not an explosion
