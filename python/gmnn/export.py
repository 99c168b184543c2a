"""Writing the model file for LAMMPS (docs/model_file.md): one frozen TorchScript archive whose
"extra files" carry the metadata (its format: model_file.py; reading it back: loading.py)."""
import copy
import os
from pathlib import Path
from typing import Optional

import torch

from . import __version__
from .loading import load
from .model import DTYPES, GMNN
from .pretrained import resolve_model_source
from .model_file import (FORMAT_VERSION, FUSED_METHODS, UNCERTAINTY_METHODS, ModelFileError, content_checksum,
                         is_model_file, is_torch_archive)


def export_model(model, path, dtype: Optional[str] = None, force: bool = False) -> Path:
    """Script, freeze and save `model` (GMNN, checkpoint path or the name of a shipped pre-trained
    model) in `dtype` (default: its own).
    An existing `path` is replaced only if it is a model file (or `force`), never if it is the
    checkpoint read."""
    path = Path(path)
    source = None if isinstance(model, GMNN) else resolve_model_source(model)  # a path, or a shipped model's name
    if source is not None and is_model_file(source):
        raise ModelFileError(f"{source} is an exported model file (gmnn-export output) already: LAMMPS, gmnn-eval "
                             "and the ASE calculator use it as it is; to export it again (e.g. in another "
                             "dtype), give the training checkpoint (.ckpt) it was exported from")
    if source is not None and path.exists() and source.exists() and os.path.samefile(source, path):
        raise ModelFileError(f"{path} is the same file as the checkpoint {source}; exporting would replace the "
                             "checkpoint: choose another output, e.g. model.pt")
    _check_replaceable(path, force)
    if source is not None:
        model = load(source, purpose="export")
    dtype = dtype or model.options.dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    model = copy.deepcopy(model).to(DTYPES[dtype]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.freeze(torch.jit.script(model), preserved_attrs=list(UNCERTAINTY_METHODS + FUSED_METHODS))
    meta = {
        "format_version": str(FORMAT_VERSION),
        "gmnn_version": __version__,
        "cutoff": repr(float(model.cutoff)),
        "atomic_numbers": " ".join(str(z) for z in model.atomic_numbers),
        "dtype": dtype,
        "units": "metal",
        "uncertainty": "llpr" if model.has_uncertainty else "none",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    extra = {f"gmnn/{k}": v for k, v in meta.items()}
    torch.jit.save(scripted, str(tmp), _extra_files=extra)
    # a checksum of code, weights and metadata: a flipped bit in the file is an error, not a
    # silently different potential (the zip reader itself does not verify its CRCs)
    extra["gmnn/checksum"] = content_checksum(tmp)
    torch.jit.save(scripted, str(tmp), _extra_files=extra)
    if content_checksum(tmp) != extra["gmnn/checksum"]:
        raise RuntimeError("TorchScript serialisation is not deterministic; cannot checksum the model file")
    tmp.replace(path)
    return path


def _check_replaceable(path: Path, force: bool) -> None:
    """Only a model file gmnn-export wrote is silently replaced: not a checkpoint, not notes."""
    if force or not path.exists() or is_model_file(path):
        return
    what = "a training checkpoint" if is_torch_archive(path) else "not a gmnn model file"
    raise ModelFileError(f"{path} exists and is {what}; gmnn-export replaces only model files it wrote: "
                         "choose another output, or pass --force to replace it")
