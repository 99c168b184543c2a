"""pair_style gmnn's per-atom force uncertainty (uncertainty yes / uncertainty_halt, read with
LAMMPS' fix pair) against the Python calculator on the same calibrated model file, on 1 and 2
MPI ranks; unchanged energies and forces; the halt; the errors for models without it."""
import re

import numpy as np
import pytest

from lammps_testing import lammps_header, read_dump, run_lmp, write_data
from parity_testing import STRUCTURES, reference

# the input deck lines docs and README recommend: sigma_F per atom (dump), its maximum (thermo)
READ_UNCERTAINTY = """
fix u all pair 1 gmnn uncertainty 0
compute umax all reduce max f_u
thermo_style custom step pe c_umax
thermo_modify format float %22.14f
"""
DUMP = "write_dump all custom {path} id fx fy fz f_u modify format float %22.15g\n"


def python_uncertainty(model_path, atoms):
    """GMNNCalculator on the same file: energy, forces and sigma_F per atom (eV/Å)."""
    from gmnn.calculator import GMNNCalculator
    calc = GMNNCalculator(model_path)
    ref = reference(calc, atoms)
    ref["uncertainty"] = np.asarray(calc.results["forces_uncertainty"], dtype=float)
    assert ref["uncertainty"].shape == (len(atoms),) and np.all(ref["uncertainty"] > 0)
    return ref


def thermo_row(stdout):
    """The values of the last thermo line of `run 0` (step pe c_umax)."""
    lines = stdout.splitlines()
    start = max(i for i, l in enumerate(lines) if l.split()[:1] == ["Step"])
    return [float(x) for x in lines[start + 1].split()]


def run_inproc(inproc, data, style_args, model, body):
    """An in-process run of `body` after pair_style/pair_coeff; returns the LAMMPS object's
    last timestep (the caller reads the files `body` writes)."""
    lmp = inproc.lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        lmp.command(f"plugin load {inproc.plugin}")
        lmp.commands_string(lammps_header(data, True) + f"pair_style gmnn {style_args}\n"
                            f"pair_coeff * * {model} C H O\n" + body)
        return lmp.extract_global("ntimestep")
    finally:
        lmp.close()


def run_expecting_error(inproc, data, style_args, model, body="run 0\n"):
    with pytest.raises(Exception) as info:
        run_inproc(inproc, data, style_args, model, body)
    return str(info.value)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """The periodic box (26 atoms, edges across the boundary) and its data file."""
    atoms = STRUCTURES["box"]()
    return atoms, write_data(atoms, tmp_path_factory.mktemp("box") / "box.data")


@pytest.mark.parametrize("nprocs,newton,per_pass", [(1, "on", 2048), (2, "off", 5)])
def test_uncertainty_matches_python(lmp_exe, mpirun, calibrated_model, tmp_path, nprocs, newton, per_pass):
    """fix pair's f_u (dump) and its maximum (thermo) are the Python sigma_F to 1e-10 relative;
    2 ranks with newton off and 5 atoms per pass (several blocks per rank)."""
    atoms = STRUCTURES["triclinic"]().repeat((2, 2, 1))
    ref = python_uncertainty(calibrated_model, atoms)
    data = write_data(atoms, tmp_path / "box.data")
    text = lammps_header(data, True, newton) + f"""
pair_style gmnn uncertainty yes atoms_per_pass {per_pass}
pair_coeff * * {calibrated_model} C H O
{READ_UNCERTAINTY}
run 0
""" + DUMP.format(path="final.dump")
    proc = run_lmp(lmp_exe, text, tmp_path, nprocs=nprocs, mpirun=mpirun)
    assert nprocs == 1 or f"{nprocs} MPI" in proc.stdout
    ids, values = read_dump(tmp_path / "final.dump")
    assert np.array_equal(ids, np.arange(1, len(atoms) + 1))
    u = values[:, 3]
    rel = np.abs(u - ref["uncertainty"]) / ref["uncertainty"]
    step, pe, umax = thermo_row(proc.stdout)
    print(f"{nprocs} rank(s): max rel |d sigma_F| = {rel.max():.2e}, sigma_F {u.min():.3f} .. {u.max():.3f} eV/A, "
          f"thermo max {umax:.6f}")
    assert rel.max() < 1e-10, (u, ref["uncertainty"])
    assert abs(umax - ref["uncertainty"].max()) < 1e-10 * umax, (umax, ref["uncertainty"].max())
    assert abs(pe - ref["energy"]) < 1e-8, (pe, ref["energy"])
    assert np.abs(values[:, :3] - ref["forces"]).max() < 1e-8


def test_energies_and_forces_unchanged_with_uncertainty(inproc, calibrated_model, box):
    """The same file with and without `uncertainty yes` (and fix pair reading it): energy,
    pressure, forces, per-atom energies and virials agree to rounding."""
    atoms, data = box
    per_atom = """
compute peatom all pe/atom
compute statom all stress/atom NULL virial
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz vol
run 0
"""
    off = inproc.run(lammps_header(data, True) + f"pair_style gmnn\npair_coeff * * {calibrated_model} C H O\n"
                     + per_atom)
    on = inproc.run(lammps_header(data, True) + f"pair_style gmnn uncertainty yes\n"
                    f"pair_coeff * * {calibrated_model} C H O\nfix u all pair 1 gmnn uncertainty 0\n" + per_atom)
    assert abs(on["pe"] - off["pe"]) < 1e-10, (on["pe"], off["pe"])
    assert np.abs(on["press"] - off["press"]).max() < 1e-6  # bar
    for key in ("forces", "energies", "atom_virial"):
        assert np.abs(on[key] - off[key]).max() < 1e-10, key


def test_uncertainty_halt_names_step_atom_element_and_value(lmp_exe, mpirun, calibrated_model, box, tmp_path):
    """2 ranks, S between the two largest sigma_F: the run stops with the timestep, the ID and
    element of the one atom above S and its value, from whichever rank owns it."""
    atoms, data = box
    u = python_uncertainty(calibrated_model, atoms)["uncertainty"]
    order = np.argsort(u)
    worst, second = order[-1], order[-2]
    limit = 0.5 * (u[worst] + u[second])
    text = lammps_header(data, True) + f"""
pair_style gmnn uncertainty_halt {limit:.10g}
pair_coeff * * {calibrated_model} C H O
reset_timestep 7
run 0
"""
    proc = run_lmp(lmp_exe, text, tmp_path, nprocs=2, mpirun=mpirun, check=False, timeout=60)
    out = proc.stdout + proc.stderr
    expected = (f"step 7: force uncertainty {u[worst]:.6g} eV/Angstrom of atom {worst + 1} "
                f"({atoms[worst].symbol}, type")
    assert proc.returncode != 0
    assert "ERROR" in out and expected in out, (expected, out[-2000:])
    assert "Segmentation" not in out and "signal" not in out.lower(), out[-2000:]


def test_uncertainty_halt_above_the_maximum_runs(inproc, calibrated_model, box, tmp_path):
    atoms, data = box
    u = python_uncertainty(calibrated_model, atoms)["uncertainty"]
    run_inproc(inproc, data, f"uncertainty_halt {1.01 * u.max():.10g}", calibrated_model,
               "run 0\n")
    with pytest.raises(Exception, match="exceeds uncertainty_halt"):
        run_inproc(inproc, data, f"uncertainty_halt {0.99 * u.max():.10g}", calibrated_model, "run 0\n")


def test_fix_halt_on_the_maximum_uncertainty(inproc, calibrated_model, box):
    """The recommended deck: fix halt on a variable of the maximum stops MD at the first step
    whose maximum sigma_F exceeds the threshold (never, with a large one)."""
    atoms, data = box
    u = python_uncertainty(calibrated_model, atoms)["uncertainty"]

    def steps_run(threshold):
        return run_inproc(inproc, data, "uncertainty yes", calibrated_model, READ_UNCERTAINTY + f"""
variable umax equal c_umax
fix stop all halt 1 v_umax > {threshold:.10g} error continue
velocity all create 300.0 4711 loop geom
fix nve all nve
timestep 0.00025
run 4
""")
    assert steps_run(100.0 * u.max()) == 4
    assert steps_run(0.5 * u.min()) == 1


def test_fix_pair_trigger_computes_on_its_steps(inproc, calibrated_model, box, tmp_path):
    """Without the keyword, fix pair with flag 1 asks for sigma_F on its steps only."""
    atoms, data = box
    u = python_uncertainty(calibrated_model, atoms)["uncertainty"]
    dump = tmp_path / "trigger.dump"
    run_inproc(inproc, data, "", calibrated_model, f"fix u all pair 10 gmnn uncertainty 1\nrun 0\n"
               + DUMP.format(path=dump))
    _, values = read_dump(dump)
    assert np.abs(values[:, 3] - u).max() < 1e-10 * u.max()


@pytest.mark.parametrize("style_args,fix,expected", [
    ("", "", set()),
    ("uncertainty yes", "", {0, 1, 2, 3, 4}),
    ("", "fix u all pair 2 gmnn uncertainty 1", {0, 2, 4}),
])
def test_only_the_steps_that_ask_compute_the_uncertainty(inproc, calibrated_model, tmp_path, style_args, fix,
                                                        expected):
    """debug yes logs, per pass, whether it computes sigma_F: never without the keyword or a fix
    pair asking (no extra work), every step with `uncertainty yes`, and only on fix pair's steps
    with its flag 1."""
    data = write_data(STRUCTURES["small_cell"](), tmp_path / "small.data")
    log = tmp_path / "log.lammps"
    lmp = inproc.lammps.lammps(cmdargs=["-screen", "none", "-log", str(log), "-nocite"])
    try:
        lmp.command(f"plugin load {inproc.plugin}")
        lmp.commands_string(lammps_header(data, True) + f"""
pair_style gmnn debug yes {style_args}
pair_coeff * * {calibrated_model} C H O
{fix}
velocity all create 300.0 4711 loop geom
fix nve all nve
timestep 0.0001
run 4
""")
    finally:
        lmp.close()
    passes = re.findall(r"^pair gmnn debug: rank 0 step (\d+): .*edges of local atoms [-0-9]+(.*)$",
                        log.read_text(), re.M)
    assert sorted({int(step) for step, _ in passes}) == [0, 1, 2, 3, 4], passes
    assert {int(step) for step, tail in passes if tail == ", with uncertainty"} == expected, passes


@pytest.mark.parametrize("which", ["exported uncalibrated", "format 1"])
@pytest.mark.parametrize("style_args,fix", [("uncertainty yes", ""), ("uncertainty_halt 1.0", ""),
                                            ("", "fix u all pair 1 gmnn uncertainty 1\n")])
def test_model_without_uncertainty_is_a_clear_error(inproc, model64, box, which, style_args, fix):
    from gmnn_testing import FORMAT_1_MODEL
    from gmnn.loading import read_metadata
    atoms, data = box
    path = model64 if which == "exported uncalibrated" else str(FORMAT_1_MODEL)
    if which == "exported uncalibrated":
        assert read_metadata(path)["uncertainty"] == "none"
    msg = run_expecting_error(inproc, data, style_args, path, fix + "run 0\n")
    assert f"model '{path}' has no calibrated uncertainty" in msg and "gmnn-calibrate" in msg, msg
    assert ("format-1 file" in msg) == (which == "format 1"), msg


def test_uncalibrated_model_runs_normally_without_the_keyword(inproc, model64, calculator, box):
    """A format-3 file exported without calibration (gmnn/uncertainty none) is a normal model."""
    atoms, data = box
    ref = reference(calculator, atoms)
    out = inproc.run(lammps_header(data, True) + f"pair_style gmnn\npair_coeff * * {model64} C H O\nrun 0\n")
    assert abs(out["pe"] - ref["energy"]) < 1e-8
    assert np.abs(out["forces"] - ref["forces"]).max() < 1e-8


def test_fix_pair_without_the_keyword_says_what_to_add(inproc, calibrated_model, box):
    atoms, data = box
    msg = run_expecting_error(inproc, data, "", calibrated_model, "fix u all pair 1 gmnn uncertainty 0\nrun 0\n")
    assert "uncertainty yes" in msg and "flag 1" in msg, msg


@pytest.mark.parametrize("args,fragment", [
    ("uncertainty_halt -1", "uncertainty_halt must be > 0"),
    ("uncertainty_halt 0", "uncertainty_halt must be > 0"),
    ("uncertainty_halt 1.0 uncertainty no", "drop 'uncertainty no'"),
    ("uncertainty maybe", "boolean"),
])
def test_bad_uncertainty_arguments(inproc, calibrated_model, box, args, fragment):
    atoms, data = box
    msg = run_expecting_error(inproc, data, args, calibrated_model)
    assert fragment in msg, msg
