"""pair_style gmnn gives the same answers on 1, 2 and 4 MPI ranks (real lmp under mpirun),
including ranks that own no atoms."""
import numpy as np
import pytest

from lammps_testing import lammps_header, place_in_box, read_dump, run_lmp, write_data
from parity_testing import STRUCTURES


def thermo_table(stdout):
    """Rows of the (last) thermo table printed by lmp, as floats."""
    lines = stdout.splitlines()
    starts = [i for i, l in enumerate(lines) if l.split()[:1] == ["Step"]]
    rows = []
    for l in lines[starts[-1] + 1:]:
        parts = l.split()
        if not parts or parts[0] == "Loop":
            break
        rows.append([float(x) for x in parts])
    return np.array(rows)


def md_input(data, periodic, newton, model, nsteps, processors=""):
    return lammps_header(data, periodic, newton, processors) + f"""
pair_style gmnn
pair_coeff * * {model} C H O
velocity all create 300.0 4928459 loop geom
fix nve all nve
timestep 0.0005
thermo_style custom step pe ke etotal press
thermo_modify format float %22.14f
thermo 10
compute st all stress/atom NULL virial
compute pe all pe/atom
run {nsteps}
write_dump all custom final.dump id x y z fx fy fz c_pe c_st[1] c_st[2] c_st[3] c_st[4] c_st[5] c_st[6] modify format float %22.15g
"""


def run_case(lmp_exe, mpirun, tmp_path, text, nprocs, tag):
    work = tmp_path / tag
    work.mkdir()
    proc = run_lmp(lmp_exe, text, work, nprocs=nprocs, mpirun=mpirun)
    return thermo_table(proc.stdout), read_dump(work / "final.dump")[1], proc.stdout


@pytest.mark.parametrize("newton", ["on", "off"])
def test_md_identical_on_1_2_4_ranks(lmp_exe, mpirun, model64, tmp_path, newton):
    """30 MD steps of a periodic triclinic box replicated 2x2x1 (~100 atoms)."""
    atoms = STRUCTURES["triclinic"]().repeat((2, 2, 1))
    data = write_data(atoms, tmp_path / "box.data")
    text = md_input(data, True, newton, model64, 30)
    results = {n: run_case(lmp_exe, mpirun, tmp_path, text, n, f"np{n}") for n in (1, 2, 4)}
    t1, d1, _ = results[1]
    for n in (2, 4):
        tn, dn, out = results[n]
        assert f"{n} MPI" in out or n == 1
        de = np.abs(tn[:, 1:4] - t1[:, 1:4]).max()     # pe ke etotal over the run
        dp = np.abs(tn[:, 4] - t1[:, 4]).max()          # bar
        dx = np.abs(dn[:, :3] - d1[:, :3]).max()
        df = np.abs(dn[:, 3:6] - d1[:, 3:6]).max()
        dea = np.abs(dn[:, 6] - d1[:, 6]).max()
        dva = np.abs(dn[:, 7:] - d1[:, 7:]).max()     # per-atom virial, bar*A^3
        print(f"newton {newton}, {n} vs 1 ranks: max|dE| = {de:.2e} eV, max|dP| = {dp:.2e} bar, "
              f"max|dx| = {dx:.2e} A, max|dF| = {df:.2e} eV/A, max|dE_i| = {dea:.2e} eV, "
              f"max|dW_i| = {dva:.2e} bar*A^3 after 30 steps")
        assert de < 1e-8, (n, tn[:, 1:4], t1[:, 1:4])
        assert dp < 1e-4, (n, tn[:, 4], t1[:, 4])
        assert dx < 1e-9 and df < 1e-7, (n, dx, df)
        assert dea < 1e-8 and dva < 1e-3, (n, dea, dva)


def test_ranks_without_atoms(lmp_exe, mpirun, model64, tmp_path):
    """A molecule cluster in the left quarter of a long non-periodic box on 4 ranks along x:
    ranks 2 and 3 own no atoms (and have no ghosts)."""
    atoms = place_in_box(STRUCTURES["cluster"](), margin=3.0)
    cell = atoms.cell.array.copy()
    cell[0, 0] = 4 * cell[0, 0]
    atoms.cell = cell
    data = write_data(atoms, tmp_path / "cluster.data")
    ref_text = md_input(data, False, "on", model64, 20)
    t1, d1, _ = run_case(lmp_exe, mpirun, tmp_path, ref_text, 1, "np1")
    for newton in ("on", "off"):
        text = md_input(data, False, newton, model64, 20, processors="processors 4 1 1")
        t4, d4, out = run_case(lmp_exe, mpirun, tmp_path, text, 4, f"np4_{newton}")
        assert "4 by 1 by 1 MPI processor grid" in out
        de = np.abs(t4[:, 1:4] - t1[:, 1:4]).max()
        df = np.abs(d4[:, 3:6] - d1[:, 3:6]).max()
        dva = np.abs(d4[:, 7:] - d1[:, 7:]).max()
        print(f"4 ranks (2 empty), newton {newton}: max|dE| = {de:.2e} eV, max|dF| = {df:.2e} eV/A, "
              f"max|dW_i| = {dva:.2e} bar*A^3")
        assert de < 1e-8 and df < 1e-7 and dva < 1e-3, (de, df, dva)
        assert np.isfinite(t4).all()
