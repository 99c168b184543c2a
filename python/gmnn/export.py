"""The model file for LAMMPS (docs/model_file.md): one frozen TorchScript archive whose
"extra files" carry the metadata, and the loader that reads it back in Python."""
import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import torch

from . import __version__
from .model import DTYPES, GMNN

# 2: forward returns float64 atomic energies whatever the model dtype (the shifts are added in
# float64); 1: in the model dtype. Both are read (docs/model_file.md).
FORMAT_VERSION = 2
META_KEYS = ("format_version", "gmnn_version", "cutoff", "atomic_numbers", "dtype", "units", "checksum")


class ModelFileError(RuntimeError):
    pass


def export_model(model, path, dtype: Optional[str] = None, force: bool = False) -> Path:
    """Script, freeze and save `model` (GMNN or checkpoint path) in `dtype` (default: its own).
    An existing `path` is replaced only if it is a model file (or `force`), never if it is the
    checkpoint read."""
    path = Path(path)
    source = None if isinstance(model, GMNN) else Path(model)
    if source is not None and is_model_file(source):
        raise ModelFileError(f"{source} is an exported model file (gmnn-export output) already: LAMMPS, gmnn-eval "
                             "and the ASE calculator use it as it is; to export it again (e.g. in another "
                             "dtype), give the training checkpoint (.ckpt) it was exported from")
    if source is not None and path.exists() and source.exists() and os.path.samefile(source, path):
        raise ModelFileError(f"{path} is the same file as the checkpoint {source}; exporting would replace the "
                             "checkpoint: choose another output, e.g. model.pt")
    _check_replaceable(path, force)
    if source is not None:
        from .checkpoint import load_model
        model = load_model(source)
    dtype = dtype or model.options.dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    model = copy.deepcopy(model).to(DTYPES[dtype]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.freeze(torch.jit.script(model))
    meta = {
        "format_version": str(FORMAT_VERSION),
        "gmnn_version": __version__,
        "cutoff": repr(float(model.cutoff)),
        "atomic_numbers": " ".join(str(z) for z in model.atomic_numbers),
        "dtype": dtype,
        "units": "metal",
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
    what = "a training checkpoint" if _is_torch_archive(path) else "not a gmnn model file"
    raise ModelFileError(f"{path} exists and is {what}; gmnn-export replaces only model files it wrote: "
                         "choose another output, or pass --force to replace it")


def is_model_file(path) -> bool:
    """Whether `path` is a gmnn model file (by its structure: TorchScript with gmnn metadata);
    read_metadata checks the rest."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:
        return False
    return any(n.endswith("/extra/gmnn/format_version") for n in names) and any("/code/" in n for n in names)


def _is_torch_archive(path: Path) -> bool:
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") for n in z.namelist())
    except Exception:
        return False


def content_checksum(path) -> str:
    """CRC-32 (hex) over the archive records that define the model: code, constants, pickles and
    gmnn metadata (not the random serialization id, not the checksum itself), in name order."""
    import zipfile
    import zlib
    skipped = {".data/serialization_id", "version", ".data/version", "extra/gmnn/checksum"}
    crc = 0
    with zipfile.ZipFile(path) as z:
        records = sorted((n.split("/", 1)[1], n) for n in z.namelist() if n.split("/", 1)[1] not in skipped)
        for name, full_name in records:  # same order and bytes as the C++ loader (gmnn_model.cpp)
            crc = zlib.crc32(name.encode(), crc)
            crc = zlib.crc32(z.read(full_name), crc)
    return f"{crc:08x}"


@dataclass
class LoadedModel:
    """What a calculator needs: the edges -> atomic energies function and its metadata."""
    atomic_energies: Callable
    cutoff: float
    atomic_numbers: List[int]
    dtype: torch.dtype


def read_metadata(path) -> dict:
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


def load_exported(path) -> LoadedModel:
    meta = read_metadata(path)
    return LoadedModel(meta["module"], float(meta["cutoff"]),
                       [int(z) for z in meta["atomic_numbers"].split()], DTYPES[meta["dtype"]])


def as_loaded_model(model) -> LoadedModel:
    """A GMNN, a checkpoint (.ckpt) or an exported file (.pt) -> LoadedModel."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, GMNN):
        return LoadedModel(model, model.cutoff, list(model.atomic_numbers), model.dtype)
    path = Path(model)
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if _is_torchscript(path):
        return load_exported(path)
    from .checkpoint import load_model
    return as_loaded_model(load_model(path))


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (`<name>/code/...`); torch.save checkpoints don't."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
