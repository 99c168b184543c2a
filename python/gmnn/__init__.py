"""gmnn: Gaussian Moment Neural Network potentials with transfer learning."""
__version__ = "0.1.0"

from .model import GMNN, ModelOptions, build_model  # noqa: E402


def export_model(model, path, dtype=None):
    """Write `model` (a GMNN or a checkpoint path) as one TorchScript file for LAMMPS."""
    from .export import export_model as _export
    return _export(model, path, dtype=dtype)


__all__ = ["GMNN", "ModelOptions", "build_model", "export_model", "__version__"]
