"""VDOS from velocity autocorrelation: known frequencies are recovered; LAMMPS dumps are read."""
import numpy as np
import pytest

from gmnn.spectrum import C_CM_PER_FS, band_positions, read_lammps_velocities, vdos


def test_vdos_recovers_the_frequencies_of_oscillators():
    dt = 0.5  # fs
    t = np.arange(4000) * dt
    freqs = [3000.0, 3650.0]  # cm^-1
    v = np.zeros((len(t), 2, 3))
    for a, nu in enumerate(freqs):
        v[:, a, 0] = np.cos(2 * np.pi * nu * C_CM_PER_FS * t + 0.3 * a)
    s = vdos(v, dt, masses=np.array([1.0, 1.0]))
    bands = band_positions(s)
    resolution = 1.0 / (len(t) * dt * C_CM_PER_FS)  # ~17 cm^-1
    assert abs(bands["C-H stretch"] - 3000.0) <= resolution
    assert abs(bands["O-H stretch"] - 3650.0) <= resolution


def test_lammps_dump_reader_sorts_by_id_and_drops_a_torn_frame(tmp_path):
    frame = lambda step, rows: (f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n"
                                "0 10\n0 10\n0 10\nITEM: ATOMS id type vx vy vz\n" + rows)
    text = frame(0, "2 1 0.2 0 0\n1 2 0.1 0 0\n") + frame(1, "1 2 0.3 0 0\n2 1 0.4 0 0\n") + frame(2, "1 2 0.5 0 0\n")
    path = tmp_path / "v.dump"
    path.write_text(text)
    v, types, masses = read_lammps_velocities(path)
    assert v.shape == (2, 2, 3)
    np.testing.assert_allclose(v[:, :, 0], [[0.1, 0.2], [0.3, 0.4]])
    assert types.tolist() == [2, 1] and masses is None
