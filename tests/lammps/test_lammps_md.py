"""Molecular dynamics with pair_style gmnn: NVE energy conservation, NPT runs."""
import numpy as np

from lammps_testing import lammps_header, write_data
from parity_testing import STRUCTURES


def run_nve(inproc, data, periodic, model, velocity, timestep_fs=0.25):
    """0.25 ps of NVE (1000 steps of 0.25 fs by default); total energy (21 samples, every 12.5 fs)
    and temperature (20 samples)."""
    every = round(12.5 / timestep_fs)
    lmp = inproc.lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        lmp.command(f"plugin load {inproc.plugin}")
        lmp.commands_string(lammps_header(data, periodic) + f"""
pair_style gmnn
pair_coeff * * {model} C H O
velocity all create 300.0 {velocity}
fix nve all nve
timestep {timestep_fs / 1000}
thermo_style custom step pe ke etotal temp
run 0
""")
        etot, temps = [lmp.get_thermo("etotal")], []
        for _ in range(20):
            lmp.command(f"run {every} pre no post no")
            etot.append(lmp.get_thermo("etotal"))
            temps.append(lmp.get_thermo("temp"))
    finally:
        lmp.close()
    return np.array(etot), temps


def test_nve_conserves_total_energy(inproc, md_model, tmp_path):
    """0.25 ps of NVE of a periodic ethanol/water/methane box started at 300 K, at time steps of
    0.25 and 0.125 fs: the total energy stays constant to ~1e-4 eV/atom, and its spread falls
    with the time step as velocity Verlet's O(dt^2) error does (forces that were not the exact
    gradient of the energy, across reneighbouring and periodic boundaries, would leave an error
    that a smaller step does not remove). The untrained model heats the box to ~1000 K, so the
    spread itself depends on the host's floating point (7.1e-5 eV/atom at 0.25 fs on one, under
    5e-5 on another, where a fixed 5e-5 bound passed); its fall with dt (12x measured) does not."""
    atoms = STRUCTURES["box"]()
    data = write_data(atoms, tmp_path / "box.data")
    n = len(atoms)
    spread = {}
    for dt in (0.25, 0.125):
        etot, temps = run_nve(inproc, data, True, md_model, "87287 loop geom", timestep_fs=dt)
        assert np.isfinite(etot).all()
        assert max(temps) > 50.0  # the atoms really moved
        spread[dt] = (etot.max() - etot.min()) / n
        print(f"NVE {n} atoms, 0.25 ps at {dt} fs: E_tot drift {(etot[-1] - etot[0]) / n:.2e} eV/atom, max spread "
              f"{spread[dt]:.2e} eV/atom, T in [{min(temps):.0f}, {max(temps):.0f}] K")
    assert spread[0.25] < 2e-4
    assert spread[0.125] < spread[0.25] / 2.5  # ~4x for O(dt^2)


def test_npt_runs_and_changes_volume(inproc, model64, tmp_path):
    """fix npt needs the global virial; a large target pressure must change the volume."""
    atoms = STRUCTURES["box"]()
    data = write_data(atoms, tmp_path / "box.data")
    out = inproc.run(lammps_header(data, True) + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
velocity all create 300.0 1234 loop geom
fix npt all npt temp 300 300 0.05 iso 20000 20000 0.5
timestep 0.0005
thermo_style custom step pe press vol
run 100
""", per_atom=False)
    v0 = atoms.get_volume()
    print(f"NPT 100 steps at 20 kbar: V {v0:.2f} -> {out['vol']:.2f} A^3")
    assert np.isfinite(out["pe"]) and out["vol"] < v0


def test_nve_of_trained_ethanol_molecule(inproc, request, tmp_path):
    """A model trained on rMD17 ethanol (tests/conftest.py), one molecule in vacuum, 1000 steps of
    0.25 fs from 300 K: a physical potential energy surface, so energy must be conserved tightly."""
    import gmnn
    import pytest
    from ase.io import read
    from gmnn_testing import ETHANOL
    from lammps_testing import place_in_box
    if not ETHANOL.exists():
        pytest.skip(f"training data {ETHANOL} not available")
    trained = request.getfixturevalue("trained_ethanol_model")
    model = str(gmnn.export_model(trained, tmp_path / "ethanol.pt", dtype="float64"))
    atoms = place_in_box(read(str(ETHANOL), index=0), margin=10.0)
    data = write_data(atoms, tmp_path / "ethanol.data")
    etot, temps = run_nve(inproc, data, False, model, "5512 loop geom mom yes rot yes")
    spread = etot.max() - etot.min()
    print(f"NVE trained ethanol, 1000 x 0.25 fs: E_tot drift {etot[-1] - etot[0]:.2e} eV, "
          f"max spread {spread:.2e} eV, T in [{min(temps):.0f}, {max(temps):.0f}] K")
    assert max(temps) < 2000.0, temps     # a stable molecule, no blow-up
    assert spread < 1e-3, etot - etot[0]
