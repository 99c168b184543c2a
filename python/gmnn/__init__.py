"""gmnn: Gaussian Moment Neural Network potentials with transfer learning.

Attributes are imported lazily, so that `import gmnn.lammps_plugin` (run by LAMMPS at every
start through the `lammps.plugins` entry point) does not pay for importing torch.
"""
__all__ = ["GMNN", "ModelOptions", "build_model", "export_model", "list_pretrained", "load_pretrained",
           "pretrained_card", "pretrained_path", "__version__"]


def export_model(model, path, dtype=None, force=False):
    """Write `model` (a GMNN, a checkpoint path or a shipped pre-trained model's name) as one
    TorchScript file for LAMMPS; `force` replaces a file at `path` that is not a gmnn model file."""
    from .export import export_model as _export
    return _export(model, path, dtype=dtype, force=force)


def _version() -> str:
    """The version, written once in pyproject.toml (CMakeLists.txt reads it there for the C++
    libraries): from the installed package's metadata, else, for a source checkout that is on
    sys.path without being installed, from pyproject.toml itself."""
    from importlib import metadata
    try:
        return metadata.version("gmnn")
    except metadata.PackageNotFoundError:
        import re
        from pathlib import Path
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


def __getattr__(name):
    if name == "__version__":  # looked up on first use: importing gmnn stays cheap
        globals()["__version__"] = version = _version()
        return version
    if name in ("GMNN", "ModelOptions", "build_model"):
        from . import model
        return getattr(model, name)
    if name in ("list_pretrained", "load_pretrained", "pretrained_card", "pretrained_path"):
        from . import pretrained  # the shipped models (pretrained_models/)
        return getattr(pretrained, name)
    raise AttributeError(f"module 'gmnn' has no attribute {name!r}")
