"""An exploding structure stops the run with a message (pair_style gmnn max_force) instead of
writing garbage; a normal run is unaffected by a generous cap."""
import numpy as np
import pytest

from lammps_testing import lammps_header, place_in_box, write_data


def close_pair(tmp_path):
    from ase import Atoms
    # two carbons 0.6 A apart: a large but finite force in the untrained test model
    atoms = place_in_box(Atoms("CCH", positions=[[0, 0, 0], [0.6, 0, 0], [0, 1.1, 0]]))
    return write_data(atoms, tmp_path / "close.data")


def run(inproc, data, model, style_args):
    return inproc.run(lammps_header(data, False) + f"""
pair_style gmnn {style_args}
pair_coeff * * {model} C H O
run 0
""")


def test_max_force_stops_an_exploding_structure(inproc, model64, tmp_path):
    data = close_pair(tmp_path)
    out = run(inproc, data, model64, "")
    largest = np.abs(out["forces"]).max()
    assert np.isfinite(largest) and largest > 1e-3
    with pytest.raises(Exception, match=r"exceeds max_force"):
        run(inproc, data, model64, f"max_force {largest / 10:.6g}")
    out2 = run(inproc, data, model64, f"max_force {100 * largest + 100:.6g}")
    np.testing.assert_allclose(out2["forces"], out["forces"], atol=1e-12)


def test_negative_max_force_is_rejected(inproc, model64, tmp_path):
    with pytest.raises(Exception, match="max_force must be >= 0"):
        run(inproc, close_pair(tmp_path), model64, "max_force -1")


def test_restart_continues_the_trajectory(inproc, md_model, tmp_path):
    """20 NVE steps in one go == 10 steps, write_restart, a new LAMMPS with read_restart +
    pair_style/pair_coeff again, 10 more steps (pair gmnn keeps nothing in the restart file)."""
    from parity_testing import STRUCTURES
    data = write_data(STRUCTURES["box"](), tmp_path / "box.data")
    restart = tmp_path / "state.restart"
    setup = f"""
pair_style gmnn
pair_coeff * * {md_model} C H O
timestep 0.00025
"""

    def positions(lmp):
        x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        return x

    def new():
        lmp = inproc.lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        lmp.command(f"plugin load {inproc.plugin}")
        return lmp

    lmp = new()
    try:
        lmp.commands_string(lammps_header(data, True) + setup + f"""
velocity all create 300.0 4711 loop geom
fix nve all nve
run 10
write_restart {restart}
run 10
""")
        straight = positions(lmp)
    finally:
        lmp.close()
    lmp = new()
    try:
        lmp.commands_string(f"read_restart {restart}\n" + setup + "fix nve all nve\nrun 10\n")
        resumed = positions(lmp)
    finally:
        lmp.close()
    np.testing.assert_allclose(resumed, straight, atol=1e-9)
