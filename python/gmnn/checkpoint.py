"""Checkpoints: written atomically (temporary file + fsync + rename), so a run killed at any
moment leaves either the previous or the new checkpoint, never a truncated one (the temporary
a kill -9 leaves, `.<name>.XXXXXXXX.tmp`, is removed by the next run: rundir.py).

Every checkpoint carries the CRC-32 that model files carry (model_file.content_checksum, over the
archive's records) in one more record, and every load verifies it: a flipped bit is an error
naming the file, not a model whose energies are 3e34 eV that gmnn-export would then pass on
with a valid checksum of its own."""
import dataclasses
import errno
import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

import torch

from .model_file import content_checksum, is_model_file

CHECKPOINT_KIND = "gmnn-checkpoint"
CHECKPOINT_VERSION = 1
CHECKSUM_RECORD = "extra/gmnn/checksum"  # the model file's record name; content_checksum skips it
TEMPORARY = re.compile(r"\.(.+\.ckpt)\.[a-z0-9_]{8}\.tmp")  # the names save_checkpoint's mkstemp makes

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        _append_checksum(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _os_error(exc)
        if cause is not None:  # write() errors (ENOSPC, EFBIG, EIO, ...) carry no file name: add it
            state = "is unchanged" if path.exists() else "was not written"
            if cause.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CheckpointError(f"{path}: disk full while writing the checkpoint; {path.name} {state}. "
                                      "Free space, then continue with --resume") from exc
            raise CheckpointError(f"{path}: cannot write the checkpoint ({cause.strerror or cause}); "
                                  f"{path.name} {state}") from exc
        raise


def _os_error(exc: BaseException) -> Optional[OSError]:
    """The OSError behind `exc`: torch.save reports a failed write as the RuntimeError of its
    zip writer ("unexpected pos") raised while handling the OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _append_checksum(path) -> None:
    """Add the CRC-32 of the archive's records as one more record (torch.load ignores it)."""
    checksum = content_checksum(path)
    with zipfile.ZipFile(path, "a") as z:
        prefix = z.namelist()[0].split("/", 1)[0]
        z.writestr(f"{prefix}/{CHECKSUM_RECORD}", checksum)


def _recorded_checksum(path: Path) -> Optional[str]:
    """The checksum a checkpoint records; None for one without (older gmnn) or no zip archive."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.split("/", 1)[-1] == CHECKSUM_RECORD]
            return z.read(names[0]).decode() if names else None
    except Exception:
        return None  # torch.load says what is wrong with the file


def _verify(path: Path, recorded: Optional[str]) -> None:
    """The archive's records against `recorded` (and the zip CRC of each record, which reading
    them checks: all a checkpoint from before checksums can be held to)."""
    try:
        actual = content_checksum(path)
    except Exception as exc:
        raise CheckpointError(f"{path}: checksum mismatch, the checkpoint is corrupt ({exc})" if recorded else
                              f"{path}: the checkpoint is corrupt ({exc})") from None
    if recorded is not None and actual != recorded:
        raise CheckpointError(f"{path}: checksum mismatch (file {actual}, recorded {recorded}): "
                              "the checkpoint is corrupt")


def exported_model_message(path, purpose: Optional[str] = None) -> str:
    what = f"{path} is an exported model file (gmnn-export output)"
    if purpose:
        return f"{what}; {purpose} needs the training checkpoint (.ckpt) it was exported from"
    return (f"{what}, not a training checkpoint (.ckpt); gmnn-eval, gmnn-sample, the ASE calculator and "
            "LAMMPS read it, training tools need the .ckpt it was exported from")


def load_checkpoint(path, purpose: Optional[str] = None) -> dict:
    """The payload of a checkpoint, verified against its checksum. `purpose` ("fine-tuning",
    "resuming") words the error when an exported model file is given instead."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if is_model_file(path):
        raise CheckpointError(exported_model_message(path, purpose))
    recorded = _recorded_checksum(path)
    if recorded is not None:
        _verify(path, recorded)  # before unpickling anything from a corrupt file
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable gmnn checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a gmnn checkpoint")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than this gmnn "
                              f"understands ({CHECKPOINT_VERSION}); upgrade gmnn")
    if recorded is None and zipfile.is_zipfile(path):
        _verify(path, None)
        log.warning("%s: no checksum (a checkpoint from an older gmnn); its zip records are intact, loading it", path)
    return payload


def load_model(path, purpose: Optional[str] = None):
    """The GMNN model stored in a checkpoint (in eval mode)."""
    from .model import GMNN
    model = GMNN.from_checkpoint_state(load_checkpoint(path, purpose)["model"])
    return model.eval()


def model_differences(saved_options: dict, options, where: str = "the checkpoint") -> List[str]:
    """The hyper-parameters in which `options` (ModelOptions, what the config builds) differ
    from a checkpoint's `saved_options`, as "model.<field> <ours> in the config, <theirs> in <where>"."""
    from ase.data import chemical_symbols
    from .model import ModelOptions
    saved = ModelOptions(**saved_options)
    out = []
    for field in dataclasses.fields(ModelOptions):
        mine, theirs = getattr(options, field.name), getattr(saved, field.name)
        if mine != theirs:
            name = "elements" if field.name == "atomic_numbers" else field.name
            if field.name == "atomic_numbers":
                mine, theirs = [chemical_symbols[z] for z in mine], [chemical_symbols[z] for z in theirs]
            show = lambda v: list(v) if isinstance(v, tuple) else v
            out.append(f"model.{name} {show(mine)} in the config, {show(theirs)} in {where}")
    return out


def temporaries(directory) -> List[Path]:
    """Temporary checkpoints in `directory` that a killed save_checkpoint left behind."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if TEMPORARY.fullmatch(p.name)) if directory.is_dir() else []
