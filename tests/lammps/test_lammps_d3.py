"""D3 dispersion on top of gmnn (gmnn.dispersion): LAMMPS' pair_style dispersion/d3 against the
s-dftd3 library (PyPI `dftd3`) in Python, alone and combined with gmnn (hybrid/overlay against an
ASE SumCalculator), with the settings of gmnn.dispersion on both sides.

Measured agreement (bj, pbe, 30/20 Å): ~5e-9 eV in energy, ~1e-9 eV/Å in forces. What remains is
the precision of the tables compiled into LAMMPS (relative ~1e-8 for the bj functionals). The
tolerances below catch any mismatch in settings (test_mismatched_settings_are_detected)."""
import numpy as np
import pytest

from lammps_testing import NKTV2P_METAL, lammps_header, place_in_box, read_dump, run_lmp, write_data
from parity_testing import ELEMENTS

TOL_E = 5e-8     # eV, total energy (measured <= 6e-9)
TOL_F = 1e-8     # eV/Å, forces (measured <= 1.2e-9); also per-atom energies (eV)
TOL_PV = 5e-8    # eV, pressure * volume (measured <= 7e-9)

OUTPUT = """
compute peatom all pe/atom
compute statom all stress/atom NULL virial
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz vol
run 0
"""


def ethanol_dimer():
    """Two ethanol molecules at contact: an O-H...O hydrogen bond of 1.95 Å, every other
    intermolecular distance >= 2.4 Å."""
    from ase.build import molecule
    a = molecule("CH3CH2OH")                       # atoms 2 and 3: O and its H
    oh = (a.positions[3] - a.positions[2]) / np.linalg.norm(a.positions[3] - a.positions[2])
    rng = np.random.default_rng(0)
    b = molecule("CH3CH2OH")
    b.rotate(rng.uniform(0, 360), rng.normal(size=3), center=b.positions[2])
    b.translate(a.positions[3] + 1.95 * oh - b.positions[2])
    d = np.linalg.norm(a.positions[:, None] - b.positions[None], axis=-1)
    assert abs(d[3, 2] - 1.95) < 1e-12 and np.delete(d.ravel(), 3 * 9 + 2).min() > 2.4
    return place_in_box(a + b)


def ethanol_box(n_mol: int = 4, seed: int = 3):
    """n_mol ethanol molecules in a triclinic periodic cell of ~730 Å^3 (liquid density), no
    intermolecular distance below 2 Å; cell much shorter than the 30 Å cutoff."""
    from ase import Atoms
    from ase.build import molecule
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[[9.0, 0.0, 0.0], [0.8, 9.2, 0.0], [-0.6, 0.7, 8.9]], pbc=True)
    while len(atoms) < 9 * n_mol:
        m = molecule("CH3CH2OH")
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        m.translate(rng.uniform(0, 1, 3) @ atoms.cell.array - m.get_center_of_mass())
        if len(atoms) and (atoms + m).get_all_distances(mic=True)[len(atoms):, :len(atoms)].min() < 2.0:
            continue
        atoms += m
    atoms.wrap()
    return atoms


STRUCTURES = {"dimer": ethanol_dimer, "box": ethanol_box}


@pytest.fixture(scope="module")
def d3(lammps_module):
    """gmnn.dispersion. Both engines' D3 are part of the set-up (the dftd3 package in
    requirements.txt, EXTRA-PAIR in the pinned LAMMPS): missing is a failure, not a skip."""
    import dftd3  # noqa: F401
    lmp = lammps_module.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        assert lmp.has_style("pair", "dispersion/d3"), "this LAMMPS has no pair_style dispersion/d3 (EXTRA-PAIR)"
    finally:
        lmp.close()
    from gmnn import dispersion
    return dispersion


def python_results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if "energies" in calc.implemented_properties:       # not in dftd3.ase.DFTD3
        out["energies"] = atoms.get_potential_energies()
    if atoms.pbc.all():
        s = atoms.get_stress(voigt=False)
        out["pv"] = -np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]]) * atoms.get_volume()
    return out


def lammps_results(inproc, atoms, lines, tmp_path, newton="on"):
    periodic = bool(atoms.pbc.all())
    data = write_data(atoms, tmp_path / "structure.data")
    out = inproc.run(lammps_header(data, periodic, newton) + "\n".join(lines) + OUTPUT)
    if periodic:
        out["pv"] = out["press"] * atoms.get_volume() / NKTV2P_METAL
    return out


def differences(out, ref):
    diff = {"E": abs(out["pe"] - ref["energy"]), "F": np.abs(out["forces"] - ref["forces"]).max()}
    if "energies" in ref:
        diff["E_i"] = np.abs(out["energies"] - ref["energies"]).max()
    if "pv" in ref:
        diff["PV"] = np.abs(out["pv"] - ref["pv"]).max()
    return diff


def assert_agree(diff, label, scale=1.0):
    msg = f"{label}: " + ", ".join(f"max|d{k}| = {v:.2e}" for k, v in diff.items())
    print(msg)
    assert diff["E"] < TOL_E * scale, msg
    assert diff["F"] < TOL_F * scale, msg
    assert diff["E_i"] < TOL_F * scale, msg
    if "PV" in diff:
        assert diff["PV"] < TOL_PV * scale, msg


# ---- D3 alone --------------------------------------------------------------------------------

@pytest.mark.parametrize("newton", ["on", "off"])
@pytest.mark.parametrize("name", ["dimer", "box"])
def test_d3_lammps_matches_python(d3, inproc, tmp_path, name, newton):
    """The recommended D3 (bj, pbe, 30/20 Å): pair_style dispersion/d3 == gmnn.dispersion.D3."""
    atoms = STRUCTURES[name]()
    ref = python_results(d3.D3(), atoms)
    out = lammps_results(inproc, atoms, d3.lammps_d3_lines(ELEMENTS), tmp_path, newton)
    assert ref["energy"] < -0.2     # a real D3 energy (eV), far above the tolerances
    assert_agree(differences(out, ref), f"D3 {name} newton {newton}: E = {ref['energy']:.6f} eV")


@pytest.mark.parametrize("damping,functional,scale", [
    ("bj", "pbe0", 1), ("bj", "b3-lyp", 1), ("bj", "revpbe", 1), ("bjm", "pbe", 1),
    # zero damping: LAMMPS' r0ab table was converted to Å with another Bohr (relative ~2e-8,
    # to the power 14 in the damping): 1e-7 eV in energy, 4e-8 eV/Å in forces here
    ("zero", "pbe", 20), ("zerom", "pbe", 20)])
def test_other_functionals_and_dampings_match(d3, inproc, tmp_path, damping, functional, scale):
    """gmnn.dispersion maps damping and functional names the same way for both engines."""
    atoms = ethanol_dimer()
    ref = python_results(d3.D3(functional, damping), atoms)
    out = lammps_results(inproc, atoms, d3.lammps_d3_lines(ELEMENTS, functional, damping), tmp_path)
    assert_agree(differences(out, ref), f"D3 {damping} {functional} dimer", scale)


def test_mismatched_settings_are_detected(d3, inproc, tmp_path):
    """Each way of getting the settings wrong moves the result by more than the tolerance, so
    the parity tests above do check the settings."""
    from dftd3.ase import DFTD3
    from dftd3.interface import RationalDampingParam
    with_atm = d3.D3()
    with_atm._param = RationalDampingParam(method="pbe", atm=True)      # s9 = 1: three-body ATM
    # the box for the cutoffs; the dimer (all within 20 Å) for the three-body term (5 s in the box)
    wrong = {"box": {"zero damping": d3.D3(damping="zero"), "bjm damping": d3.D3(damping="bjm"),
                     "pbe0 parameters": d3.D3(functional="pbe0"), "cutoff 31 A": d3.D3(cutoff=31.0),
                     "cn_cutoff 21 A": d3.D3(cn_cutoff=21.0),
                     # dftd3's own ASE calculator: the same D3 in ASE's (CODATA) Bohr and Hartree
                     "CODATA units": DFTD3(method="pbe", damping="d3bj",
                                           realspace_cutoff={"disp2": 30.0, "cn": 20.0, "disp3": 20.0})},
             "dimer": {"three-body ATM": with_atm}}
    for name, calcs in wrong.items():
        atoms = STRUCTURES[name]()
        out = lammps_results(inproc, atoms, d3.lammps_d3_lines(ELEMENTS), tmp_path)
        for label, calc in calcs.items():
            diff = differences(out, python_results(calc, atoms))
            print(f"{label} ({name}): " + ", ".join(f"max|d{k}| = {v:.2e}" for k, v in diff.items()))
            assert diff["E"] > 3 * TOL_E or diff["F"] > 3 * TOL_F, (label, diff)


# ---- gmnn + D3 ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dimer", "box"])
def test_hybrid_overlay_matches_sum_calculator(d3, inproc, model64, calculator, tmp_path, name):
    """pair_style hybrid/overlay gmnn dispersion/d3 == GMNNCalculator + D3 (ASE SumCalculator)."""
    atoms = STRUCTURES[name]()
    ref = python_results(d3.with_d3(calculator), atoms)
    lines = d3.lammps_d3_lines(ELEMENTS, model=model64)
    assert lines[1].startswith("pair_style hybrid/overlay gmnn dispersion/d3 bj pbe 30 20"), lines
    out = lammps_results(inproc, atoms, lines, tmp_path)
    gmnn_only = python_results(calculator, atoms)
    assert abs(ref["energy"] - gmnn_only["energy"]) > 0.2     # the D3 part is there
    assert_agree(differences(out, ref), f"gmnn + D3 {name}")


def test_lmp_executable_with_mpi(d3, lmp_exe, mpirun, model64, calculator, tmp_path):
    """The recommended deck in the real `lmp` (plugin auto-loaded) on 2 MPI ranks."""
    atoms = ethanol_box()
    ref = python_results(d3.with_d3(calculator), atoms)
    data = write_data(atoms, tmp_path / "box.data")
    proc = run_lmp(lmp_exe, lammps_header(data, True) + "\n".join(d3.lammps_d3_lines(ELEMENTS, model=model64)) + """
compute peatom all pe/atom
thermo_style custom step pe
thermo_modify format float %20.12f
run 0
write_dump all custom forces.dump id fx fy fz c_peatom modify format float %20.15g
""", tmp_path, nprocs=2, mpirun=mpirun)
    lines = proc.stdout.splitlines()
    k = next(i for i, l in enumerate(lines) if l.split()[:2] == ["Step", "PotEng"])
    pe = float(lines[k + 1].split()[1])
    _, d = read_dump(tmp_path / "forces.dump")
    assert_agree({"E": abs(pe - ref["energy"]), "F": np.abs(d[:, :3] - ref["forces"]).max(),
                  "E_i": np.abs(d[:, 3] - ref["energies"]).max()}, "lmp np=2 gmnn + D3 box")


# ---- the lines themselves (no LAMMPS needed) --------------------------------------------------

def test_lammps_lines():
    from gmnn.dispersion import lammps_d3_lines
    assert lammps_d3_lines(["C", "H", "O"]) == [
        "neigh_modify one 28000 page 280000", "pair_style dispersion/d3 bj pbe 30 20", "pair_coeff * * C H O"]
    assert lammps_d3_lines(["H", "O"], functional="pbe0", model="m.pt", gmnn_args="device cpu") == [
        "neigh_modify one 28000 page 280000",
        "pair_style hybrid/overlay gmnn device cpu dispersion/d3 bj pbe0 30 20",
        "pair_coeff * * gmnn m.pt H O", "pair_coeff * * dispersion/d3 H O"]
    assert lammps_d3_lines(["C"], damping="zero")[1] == "pair_style dispersion/d3 original pbe 30 20"
    with pytest.raises(ValueError, match="damping"):
        lammps_d3_lines(["C"], damping="d3bj")
    with pytest.raises(ValueError, match="cn_cutoff"):
        lammps_d3_lines(["C"], cutoff=15.0, cn_cutoff=20.0)


def test_example_deck_with_d3(d3, lmp_exe, model64, calculator, tmp_path):
    """examples/lammps/in.ethanol with `-var d3 yes` runs the recommended deck: its step-0 energy
    is gmnn + D3 of Python (with `d3 no`, gmnn alone; with `d3cut 12 d3cn 10`, D3 cut there)."""
    from pathlib import Path
    deck = Path(__file__).resolve().parents[2] / "examples" / "lammps" / "in.ethanol"
    atoms = ethanol_box()
    data = write_data(atoms, tmp_path / "box.data")
    for d3_on, cut, cn, calc in (("yes", 30, 20, d3.with_d3(calculator)), ("no", 30, 20, calculator),
                                 ("yes", 12, 10, d3.with_d3(calculator, cutoff=12.0, cn_cutoff=10.0))):
        # index variables defined first win over the deck's own defaults (as -var would)
        proc = run_lmp(lmp_exe, f"variable model index {model64}\nvariable data index {data}\n"
                       f"variable steps index 0\nvariable d3 index {d3_on}\n"
                       f"variable d3cut index {cut}\nvariable d3cn index {cn}\n"
                       f"include {deck}\nprint \"PE $(pe:%.12f)\"\n", tmp_path)
        pe = float(next(l for l in proc.stdout.splitlines() if l.startswith("PE ")).split()[1])
        ref = python_results(calc, atoms)["energy"]
        assert abs(pe - ref) < TOL_E, (d3_on, cut, pe, ref)
