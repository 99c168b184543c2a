"""gmnn-label: numbers equal PySCF called directly; an interrupted run resumes with no
duplicate and no lost structure, also in files of the previous version; the level of theory is
recorded in the file and checked; workers never outlive gmnn-label; bad levels, options and files
are one-line errors before any work starts."""
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units

from gmnn.data import read_structures
from gmnn.label_file import geometry_key, read_finished
from gmnn.labelling import label_structures
from gmnn.levels import LabelError, Level

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
    assert sorted(f.source_index for f in read_finished(out, level)) == [0, 3]
    new = label_structures(molecules, out, level, forces=False, workers=2, progress=False)
    assert new == 4
    done = [f.source_index for f in read_finished(out, level)]
    assert done == list(range(6))  # each exactly once, and in input order once complete
    assert len(read_structures(out)) == 6
    with pytest.raises(LabelError, match="holds labels at level hf/sto-3g"):
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


# ---- resuming: finished work is keyed by geometry and the exact level -------------------------

TL_DATA = Path(__file__).resolve().parents[1] / "examples" / "transfer_learning" / "data"


def test_resume_finds_finished_structures_by_geometry_not_by_index(tmp_path):
    out = tmp_path / "w.xyz"
    level = Level.parse("hf/sto-3g")
    label_structures([water(0), water(1)], out, level, forces=False, progress=False)
    # another input file: new structures at the source indices already in the file, and the two
    # labelled ones at other indices
    other = [water(4), water(1), water(5), water(0)]
    assert label_structures(other, out, level, forces=False, progress=False) == 2
    assert label_structures(other, out, level, forces=False, progress=False) == 0
    assert label_structures([water(0), water(1)], out, level, forces=False, progress=False) == 0
    assert len(read_structures(out)) == 4


def test_a_geometry_repeated_in_the_input_needs_one_frame_per_index():
    from gmnn.label_file import Finished, unfinished
    molecules = [water(0), water(1), water(0)]
    w0, w1 = (geometry_key(m.numbers, m.positions) for m in molecules[:2])
    assert unfinished(molecules, [0, 1, 2], [Finished(2, w0)]) == [0, 1]
    assert unfinished(molecules, [0, 1, 2], [Finished(2, w0), Finished(0, w0), Finished(1, w1)]) == []
    assert unfinished(molecules, [0, 1, 2], [Finished(7, w0), Finished(8, w1)]) == [2]  # from another file


def test_a_file_at_a_level_whose_name_contains_this_one_is_refused(tmp_path):
    from gmnn.label_file import append_frame, frame_text
    out = tmp_path / "w.xyz"
    append_frame(out, frame_text(water(0).numbers, water(0).positions, -2000.0, None, Level.parse("hf/6-31g*"), 0, 0.5))
    before = out.read_text()
    with pytest.raises(LabelError, match=r"level hf/6-31g\*.*this run: hf/6-31g\b"):
        label_structures([water(1)], out, Level.parse("hf/6-31g"), forces=False, progress=False)
    with pytest.raises(LabelError, match="charge 1"):
        label_structures([water(1)], out, Level.parse("hf/6-31g*", charge=1, spin=1), forces=False,
                         progress=False)
    assert out.read_text() == before


def test_geometry_key_survives_the_extxyz_round_trip():
    import io
    import ase.io
    rng = np.random.default_rng(0)
    for _ in range(200):
        atoms = Atoms("C2H6O", positions=rng.normal(scale=2.0, size=(9, 3)))
        buf = io.StringIO()
        ase.io.write(buf, atoms, format="extxyz")
        back = ase.io.read(io.StringIO(buf.getvalue()), format="extxyz")
        assert geometry_key(atoms.numbers, atoms.positions) == geometry_key(back.numbers, back.positions)
    moved = atoms.positions.copy()
    moved[3, 1] += 1e-4
    assert geometry_key(atoms.numbers, moved) != geometry_key(atoms.numbers, atoms.positions)


@pytest.mark.parametrize("labels, geometries, index", [
    ("ethanol_md500K_pbe_def2svp.xyz", "ethanol_xtb_md_500K.xyz", ":"),
    ("ethanol_ccsdt_ccpvdz.xyz", "../../../data/rmd17_ethanol_100.xyz", ":"),
    ("ethanol_ccsdt_ccpvdz_forces.xyz", "../../../data/rmd17_ethanol_100.xyz", "0:53"),
])
def test_committed_label_files_of_the_previous_version_resume_as_complete(tmp_path, monkeypatch, labels,
                                                                          geometries, index):
    """Files written before geometry keys existed (level= and source_index= only) continue:
    nothing is recomputed, a torn last frame is cut, the input order is restored."""
    import gmnn.labelling as labelling
    from gmnn.data import parse_index
    text = (TL_DATA / labels).read_text()
    level = Level.parse(text.splitlines()[1].split("level=")[1].split()[0])
    frames = text.splitlines(keepends=True)
    n = int(frames[0]) + 2
    out = tmp_path / labels
    # out of order (two parallel workers), then a frame torn by a kill in mid-write
    out.write_text("".join(frames[n:2 * n] + frames[:n] + frames[2 * n:]) + "".join(frames[:n])[:-40])
    inputs = [s.to_atoms() for s in read_structures(TL_DATA / geometries, energy_key="none", forces_key="none")]
    indices = list(range(len(inputs)))[parse_index(index)]

    def recompute(*args, **kwargs):
        raise AssertionError("a structure already in the file was computed again")
    monkeypatch.setattr(labelling, "compute", recompute)
    assert label_structures(inputs, out, level, indices=indices, progress=False) == 0
    assert out.read_text() == text  # torn frame gone, sorted back into input order, nothing else touched


def test_a_frame_torn_anywhere_is_cut_off_and_nothing_else(tmp_path):
    from gmnn.label_file import frame_text
    level = Level.parse("hf/sto-3g")
    frames = [frame_text(water(k).numbers, water(k).positions, -2000.0 - k, np.full((3, 3), 0.1 * k), level, k, 1.0)
              for k in range(3)]
    good = "".join(frames[:2])
    out = tmp_path / "w.xyz"
    for cut in range(0, len(frames[2]), 7):  # killed after writing `cut` characters of frame 2
        out.write_text(good + frames[2][:cut])
        assert [f.source_index for f in read_finished(out, level)] == [0, 1], cut
        assert out.read_text() == good, cut


def test_an_output_file_that_is_not_a_label_file_is_never_truncated(tmp_path):
    level = Level.parse("hf/sto-3g")
    for name, content in [("notes.txt", "my notes\nline 2\n"),
                          ("data.xyz", "3\nProperties=species:S:1:pos:R:3 energy=-1.0\n"
                                       "O 0 0 0\nH 1 0 0\nH 0 1 0\n2\nno level here\n")]:
        out = tmp_path / name
        out.write_text(content)
        with pytest.raises(LabelError, match="not a gmnn-label frame"):
            label_structures([water(0)], out, level, forces=False, progress=False)
        assert out.read_text() == content


# ---- stopping: no worker outlives gmnn-label -----------------------------------------------

BIN = Path(sys.executable).parent


def _proc_stat(pid):
    """(state, parent pid, start time) of a process from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _children(pid):
    """pid -> start time of the processes whose parent is `pid` (workers, multiprocessing's
    resource tracker)."""
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[1] == pid:
                kids[int(entry)] = stat[2]
    return kids


def _workers(pid):
    return [k for k in _children(pid) if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def _running(processes):
    """The processes (pid -> start time) that still run (a zombie has stopped)."""
    alive = []
    for pid, started in processes.items():
        stat = _proc_stat(pid)
        if stat and stat[0] != "Z" and stat[2] == started:
            alive.append(pid)
    return alive


def _wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _start_label(tmp_path, molecules, *args):
    import ase.io
    inp, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(inp, molecules)
    proc = subprocess.Popen([str(BIN / "gmnn-label"), str(inp), "-o", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, out


def _cleanup(processes):
    for pid in _running(processes):  # only what this test started
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_gmnn_label_with_sigkill_leaves_no_worker_running(tmp_path):
    from ase.build import molecule
    ethanol = molecule("CH3CH2OH")  # HF/cc-pVTZ forces: minutes per structure
    moved = ethanol.copy()
    moved.positions[0] += 0.05
    proc, out = _start_label(tmp_path, [ethanol, moved], "--level", "hf/cc-pvtz", "--workers", "2")
    workers = {}
    try:
        _wait_until(lambda: len(_workers(proc.pid)) == 2 or proc.poll() is not None, 60, "two workers")
        time.sleep(1.0)  # computing
        workers = _children(proc.pid)
        assert len(_workers(proc.pid)) == 2, proc.communicate()
        proc.kill()
        proc.wait()
        try:
            _wait_until(lambda: not _running(workers), 5, "the workers to die with their parent")
        finally:
            survivors = _running(workers)
        assert not survivors, f"workers {survivors} still run after gmnn-label was killed"
        proc.communicate(timeout=5)  # and nothing holds its stdout/stderr open
    finally:
        _cleanup(workers)
        proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_saves_the_finished_structures_exits_143_and_a_rerun_continues(tmp_path):
    molecules = [water(k) for k in range(6)]  # HF/6-31G* energies: ~0.5 s each
    level = Level.parse("hf/6-31g*")
    proc, out = _start_label(tmp_path, molecules, "--level", "hf/6-31g*", "--no-forces")
    workers = {}
    try:
        _wait_until(lambda: out.exists() and out.read_text().count("source_index=") >= 2 or proc.poll() is not None,
                    60, "two labelled structures")
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 143, stdout + stderr
        saved = int(re.search(r"(\d+) of 6 structure\(s\) are in", stderr).group(1))
        assert 2 <= saved < 6 and "re-run" in stderr
        _wait_until(lambda: not _running(workers), 5, "the workers to end")
    finally:
        _cleanup(workers)
        proc.kill()
    text = out.read_text()
    assert len(read_finished(out, level)) == saved and out.read_text() == text  # no torn frame
    assert label_structures(molecules, out, level, forces=False, progress=False) == 6 - saved
    assert [f.source_index for f in read_finished(out, level)] == list(range(6))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_watchdog_ends_a_worker_whose_parent_died_without_prctl(tmp_path):
    """The fallback where PR_SET_PDEATHSIG is unavailable: a thread that watches os.getppid()."""
    script = ("import os, sys, time\n"
              "from gmnn.labelling import _die_with_parent\n"
              "parent = os.getpid()\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    _die_with_parent(parent, prctl=False)\n"
              "    time.sleep(60)\n"
              "    os._exit(0)\n"
              "print(pid, flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = {}
    try:
        pid = int(proc.stdout.readline())
        child = {pid: _proc_stat(pid)[2]}
        proc.kill()
        proc.wait()
        _wait_until(lambda: not _running(child), 5, "the orphaned worker to exit")
    finally:
        _cleanup(child)
        proc.kill()


@pytest.mark.slow
def test_xtb_labels_after_xtb_ran_in_the_calling_process(tmp_path):
    """Workers are fresh interpreters: a forked child of a process that had run tblite hung in its
    first xTB calculation (sample_md, then label_structures, in one script or notebook)."""
    pytest.importorskip("tblite")
    script = ("from ase import Atoms\n"
              "from gmnn.labelling import label_structures\n"
              "from gmnn.levels import Level, compute\n"
              "if __name__ == '__main__':\n"
              "    w = Atoms('OH2', positions=[[0, 0, 0], [0.95, 0, 0], [-0.2, 0.93, 0]])\n"
              "    compute(w.numbers, w.positions, Level.parse('gfn2-xtb'))\n"
              "    print(label_structures([w], 'out.xyz', Level.parse('gfn2-xtb'), progress=False))\n")
    (tmp_path / "run.py").write_text(script)
    proc = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr


# ---- bad levels, options and files: one line, exit 2, before any work ----------------------

BAD = [
    (["--level", "foo/sto-3g"], "unknown method 'foo'"),
    (["--level", "pbe/nosuchbasis"], "unknown basis 'nosuchbasis'"),
    (["--level", "/sto-3g"], "expected 'method/basis'"),
    (["--level", "pbe/"], "expected 'method/basis'"),
    (["--level", "gfn2-xtb/sto-3g"], "xTB"),
    (["--level", "gfn3-xtb"], "expected 'method/basis'"),
    (["--level", "pbe-d3/sto-3g"], "dispersion"),
    (["--level", "b97-3c/sto-3g"], "3c"),
    (["{oh}", "--level", "ccsd(t)/sto-3g", "--spin", "1"], "CCSD(T) forces"),
    (["--level", "hf/sto-3g", "--workers", "-1"], "--workers"),
    (["--level", "hf/sto-3g", "--workers", "0"], "--workers"),
    (["--level", "hf/sto-3g", "--threads", "-2"], "--threads"),
    (["--level", "hf/sto-3g", "--spin", "1"], "10 electrons"),
    (["--level", "hf/sto-3g", "--spin", "-2"], "--spin"),
    (["--level", "hf/sto-3g", "--charge", "12"], "-2 electrons"),
    (["--level", "gfn2-xtb", "--spin", "1"], "10 electrons"),
    (["--level", "hf/sto-3g", "--no-density-fit"], "--no-density-fit"),
    (["--level", "pbe/sto-3g", "--frozen-core"], "--frozen-core"),
    (["{gold}", "--level", "hf/6-31g"], "Au"),
    (["{periodic}", "--level", "hf/sto-3g"], "periodic"),
    (["--level", "hf/sto-3g", "--index", "5"], "--index '5' selects none of the 2"),
    (["--level", "hf/sto-3g", "--index", "x"], "bad index"),
    (["{missing}", "--level", "hf/sto-3g"], "not found"),
    (["{empty}", "--level", "hf/sto-3g"], "empty.xyz"),
    (["--level", "hf/sto-3g", "-o", "{water}"], "is the input"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_level_option_or_file_is_one_line_exit_2_before_any_work(tmp_path, capsys, args, message):
    import ase.io
    from gmnn.cli import label_main
    files = {"water": tmp_path / "water.xyz", "oh": tmp_path / "oh.xyz", "gold": tmp_path / "gold.xyz",
             "periodic": tmp_path / "periodic.xyz", "missing": tmp_path / "missing.xyz",
             "empty": tmp_path / "empty.xyz"}
    ase.io.write(files["water"], [water(0), water(1)])
    ase.io.write(files["oh"], Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]]))
    ase.io.write(files["gold"], [water(0), Atoms("Au2", positions=[[0, 0, 0], [2.5, 0, 0]])])
    ase.io.write(files["periodic"], Atoms("OH2", positions=water(0).positions, cell=[5, 5, 5], pbc=True))
    files["empty"].write_text("")
    args = [a.format(**files) for a in args]
    if not args[0].startswith("-"):
        inp, args = args[0], args[1:]
    else:
        inp = str(files["water"])
    out = tmp_path / "out.xyz"
    before = {p: p.read_bytes() for p in files.values() if p.exists()}
    with warnings.catch_warnings(record=True) as warned:  # e.g. PySCF's hints: more lines on stderr
        warnings.simplefilter("always")
        assert label_main([inp, "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not warned, [str(w.message) for w in warned]
    assert not out.exists()  # no work started
    assert {p: p.read_bytes() for p in files.values() if p.exists()} == before


def test_one_bad_structure_does_not_lose_the_others(tmp_path, capsys):
    import ase.io
    from gmnn.cli import label_main
    radical = Atoms("OH", positions=[[0, 0, 0], [0.97, 0, 0]])  # odd electron count: fails at spin 0
    ase.io.write(tmp_path / "in.xyz", [water(0), radical, water(1)])
    out = tmp_path / "out.xyz"
    assert label_main([str(tmp_path / "in.xyz"), "-o", str(out), "--level", "hf/sto-3g", "--no-forces"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "1 of 3 structure(s) failed (structure 1: Electron number 9 and spin 0" in errors[0]
    assert [f.source_index for f in read_finished(out, Level.parse("hf/sto-3g"))] == [0, 2]


def test_gmnn_label_keeps_the_inputs_metadata_but_not_its_labels(tmp_path):
    """kind=, temperature_K= and the like survive labelling (they say what a structure is); an
    old energy does not, and the label file's own keys are gmnn-label's."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from gmnn.cli import label_main
    frames = []
    for k in range(2):
        w = water(k)
        w.info.update({"kind": "hbond" if k else "scan", "temperature_K": 300.0 + k, "level": "not-this"})
        w.calc = SinglePointCalculator(w, energy=5.0)
        frames.append(w)
    ase.io.write(tmp_path / "in.xyz", frames)
    out = tmp_path / "out.xyz"
    assert label_main([str(tmp_path / "in.xyz"), "-o", str(out), "--level", "hf/sto-3g", "--no-forces"]) == 0
    labelled = sorted(ase.io.read(out, ":"), key=lambda a: a.info["source_index"])
    assert [a.info["kind"] for a in labelled] == ["scan", "hbond"]
    assert [a.info["temperature_K"] for a in labelled] == [300.0, 301.0]
    assert all(a.info["level"] == "hf/sto-3g" for a in labelled)
    assert all(a.get_potential_energy() < -2000.0 for a in labelled)  # HF water, not the old 5 eV
