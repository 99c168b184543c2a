"""Checkpoints: written atomically (temporary file + fsync + rename), so a run killed at any
moment leaves either the previous or the new checkpoint, never a truncated one."""
import errno
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_KIND = "gmnn-checkpoint"
CHECKPOINT_VERSION = 1


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
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            state = "is unchanged" if path.exists() else "was not written"
            raise CheckpointError(f"{path}: disk full while writing the checkpoint; {path.name} {state}. "
                                  "Free space, then continue with --resume") from exc
        raise


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable gmnn checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a gmnn checkpoint")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than this gmnn "
                              f"understands ({CHECKPOINT_VERSION}); upgrade gmnn")
    return payload


def load_model(path):
    """The GMNN model stored in a checkpoint (in eval mode)."""
    from .model import GMNN
    model = GMNN.from_checkpoint_state(load_checkpoint(path)["model"])
    return model.eval()
