"""One way to load a model, whatever made the file: `load(path)` gives the GMNN of a training
checkpoint (.ckpt) or an `ExportedModel` for a model file (.pt, gmnn-export). Both are called the
same way, forward(edge_vectors, centers, neighbors, species, n_centers) -> float64 atomic
energies (docs/model_file.md), and carry `cutoff`, `atomic_numbers`, `symbols` and `dtype`: what
inference.predict, the ASE calculator and gmnn-eval need. Training tools (gmnn-finetune --from,
gmnn-export) need the trainable GMNN: `load(path, purpose=...)` accepts a checkpoint only."""
from pathlib import Path
from typing import List, Optional

import torch
from ase.data import chemical_symbols
from torch import nn

from .checkpoint import load_model
from .model import DTYPES
from .model_file import FORMAT_VERSION, META_KEYS, ModelFileError, content_checksum, is_torchscript
from .pretrained import resolve_model_source


class ExportedModel(nn.Module):
    """An exported model file: its frozen TorchScript module and its metadata."""

    def __init__(self, module, cutoff: float, atomic_numbers: List[int], dtype: torch.dtype, format_version: int,
                 has_uncertainty: bool = False):
        super().__init__()
        self.module = module
        self.cutoff = cutoff
        self.atomic_numbers = atomic_numbers
        self.dtype = dtype
        self.format_version = format_version
        self.has_uncertainty = has_uncertainty

    @property
    def symbols(self) -> List[str]:
        return [chemical_symbols[z] for z in self.atomic_numbers]

    def forward(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                species: torch.Tensor, n_centers: int) -> torch.Tensor:
        """Atomic energies in float64 (format 1 files return them in the model dtype)."""
        return self.module(edge_vectors, centers, neighbors, species, n_centers).to(torch.float64)

    def forward_uncertainty(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                            species: torch.Tensor, n_centers: int):
        """GMNN.forward_uncertainty of a format-3 file with a calibrated uncertainty."""
        if not self.has_uncertainty:
            raise ModelFileError(no_uncertainty_message(self.format_version))
        return self.module.forward_uncertainty(edge_vectors, centers, neighbors, species, n_centers)

    def energy_uncertainty(self, structure_features: torch.Tensor) -> torch.Tensor:
        return self.module.energy_uncertainty(structure_features)


def no_uncertainty_message(format_version: int) -> str:
    if format_version < 3:
        return (f"this model file (format {format_version}) has no uncertainty: export its checkpoint again with "
                "this gmnn (gmnn-export), after calibrating it (gmnn-calibrate)")
    return "this model has no calibrated uncertainty: calibrate its checkpoint with gmnn-calibrate, then export it"


def load(path, purpose: Optional[str] = None):
    """The model in `path`: a checkpoint's GMNN (in eval mode) or a model file's ExportedModel;
    `path` may also name a shipped pre-trained model (pretrained.py; an existing file wins).
    `purpose` ("fine-tuning", "export") names a use that needs the checkpoint's GMNN: a model
    file is then a CheckpointError that says which file to give instead."""
    path = resolve_model_source(path)
    if purpose is None:
        if is_torchscript(path):
            return load_exported(path)
    return load_model(path, purpose)


def as_model(model):
    """A model object as it is; a path loaded (`load`)."""
    return model if isinstance(model, nn.Module) else load(model)


def load_exported(path) -> ExportedModel:
    meta = read_metadata(path)
    return ExportedModel(meta["module"], float(meta["cutoff"]), [int(z) for z in meta["atomic_numbers"].split()],
                         DTYPES[meta["dtype"]], int(meta["format_version"]), meta["uncertainty"] == "llpr").eval()


def read_metadata(path) -> dict:
    """The metadata of a model file (strings, docs/model_file.md) and its TorchScript `module`,
    after checking its version and checksum."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    extra = {f"gmnn/{k}": "" for k in META_KEYS}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable TorchScript file (corrupt or truncated?): {exc}") from exc
    try:
        meta = {k[len("gmnn/"):]: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{path}: corrupt gmnn metadata (not text): {exc}") from None
    if not meta["format_version"]:
        raise ModelFileError(f"{path}: TorchScript file is not a gmnn model (no gmnn/format_version)")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {meta['format_version']} is newer than this gmnn "
                             f"reads ({FORMAT_VERSION})")
    if meta["checksum"]:
        try:
            actual = content_checksum(path)
        except Exception as exc:
            raise ModelFileError(f"{path}: cannot verify the model file: {exc}") from exc
        if actual != meta["checksum"]:
            raise ModelFileError(f"{path}: checksum mismatch (file {actual}, recorded {meta['checksum']}): "
                                 f"the model file is corrupt")
    meta["module"] = module
    return meta
