"""The pre-trained models shipped with gmnn, usable by name wherever a model file is taken
(gmnn-finetune --from NAME, gmnn-eval NAME, gmnn-export NAME, GMNNCalculator(NAME)).

Each model is two files in `pretrained_models/` (package data): `<name>.ckpt`, a training
checkpoint (the model and its calibrated uncertainty, no optimizer state: `slim_checkpoint`),
and `<name>.json`, its model card: what it was trained on (level of theory, data and the
commands that made it), its errors, the domain it is meant for, how to fine-tune it, and the
sha256 of the .ckpt, verified before every load.

`resolve_model_source` is the one place a name becomes a path: an existing file always wins
over a name."""
import hashlib
import json
from pathlib import Path
from typing import List, Union

from .model_file import ModelFileError

MODELS_DIR = Path(__file__).resolve().parent / "pretrained_models"


class PretrainedModelError(ModelFileError):
    """An unknown name, or a shipped file that is damaged (one line, exit 2 in the CLI)."""


def list_pretrained() -> List[str]:
    """The names of the shipped models, sorted."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json") if (MODELS_DIR / f"{p.stem}.ckpt").is_file())


def _unknown(name: str, what: str) -> PretrainedModelError:
    names = list_pretrained()
    shipped = ", ".join(names) if names else "none"
    return PretrainedModelError(f"{name}: {what}; shipped pre-trained models: {shipped}")


def pretrained_card(name: str) -> dict:
    """The model card of shipped model `name` (its .json)."""
    if name not in list_pretrained():
        raise _unknown(name, "no pre-trained model of that name")
    return json.loads((MODELS_DIR / f"{name}.json").read_text())


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained_path(name: str) -> Path:
    """The checkpoint of shipped model `name`, after checking it against its card's sha256."""
    card = pretrained_card(name)
    path = MODELS_DIR / f"{name}.ckpt"
    actual = sha256(path)
    if actual != card["sha256"]:
        raise PretrainedModelError(f"{path}: the shipped pre-trained model {name!r} is damaged (sha256 {actual}, "
                                   f"its card says {card['sha256']}); reinstall gmnn")
    return path


def resolve_model_source(source: Union[str, Path]) -> Path:
    """The file a user means by `source`: an existing file as it is, else a shipped model's
    checkpoint by name; neither is a one-line error that lists the shipped names."""
    path = Path(source)
    if path.exists():
        return path
    if str(source) in list_pretrained():
        return pretrained_path(str(source))
    raise _unknown(str(source), "not found: no such file, and no shipped pre-trained model of that name")


def load_pretrained(name: str):
    """The shipped model `name` as a GMNN (eval mode), ready for GMNNCalculator, fine-tuning
    (gmnn.finetuning) or gmnn.export_model."""
    from .checkpoint import load_model
    return load_model(pretrained_path(name))


# the payload keys a shipped checkpoint keeps: what gmnn's loaders, gmnn-finetune and the model
# card need (no optimizer or scheduler state, which is most of a training checkpoint)
SHIPPED_KEYS = ("model", "uncertainty", "epoch", "best_epoch", "best_loss", "config", "gmnn_version")


def slim_checkpoint(source, destination) -> Path:
    """Write `source` (a training checkpoint, e.g. best.ckpt) without its optimizer and
    scheduler state as `destination`, the form in which models are shipped."""
    from .checkpoint import load_checkpoint, save_checkpoint
    payload = load_checkpoint(source)
    save_checkpoint(destination, {k: payload[k] for k in SHIPPED_KEYS if k in payload})
    return Path(destination)
