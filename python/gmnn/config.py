"""Typed run configuration read from YAML.

Every field is documented here, defaults live here only, an unknown key is an error that
suggests the closest valid key, and values are type-checked.
"""
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    train_file: str = ""                 # structures to train on (extxyz/ASE, .npz, ANI .h5)
    train_index: str = ":"               # frames of train_file to use, ASE-style "start:stop"
    valid_file: Optional[str] = None     # separate validation file (may be train_file); else split
    valid_index: str = ":"               # frames of valid_file, e.g. "80:" with valid_file = train_file
    test_file: Optional[str] = None      # optional held-out set, evaluated with the best model
    energy_key: str = "auto"             # property name; "auto" detects, "none" ignores
    forces_key: str = "auto"
    energy_unit: Optional[str] = None    # e.g. "kcal/mol", "Hartree"; default: the format's convention
    force_unit: Optional[str] = None     # e.g. "Hartree/Angstrom"; default energy_unit/length_unit
    length_unit: Optional[str] = None    # "Angstrom" or "Bohr"
    level: Optional[str] = None          # level of theory in ANI HDF5 files, e.g. "wb97x_dz"
    n_train: Optional[int] = None        # structures for training (default: all but n_valid)
    n_valid: int = 0                     # structures for validation (split from train_file)
    split_seed: int = 0                  # seed of the random train/validation split
    shuffle_split: bool = True           # False: first n_train train, next n_valid validate
    energy_outlier_limit: Optional[float] = 10.0  # eV/atom from a per-element fit: mixed units? null = off


@dataclass
class ModelConfig:
    """The model's hyper-parameters as the YAML gives them; None = not given. Their defaults live
    in one place, `model.ModelOptions`, which `ModelOptions.from_config` fills in; fine-tuning
    takes them from the checkpoint and refuses a config that contradicts it."""
    elements: Optional[List[str]] = None  # element symbols; default: those in the training data
    cutoff: Optional[float] = None        # r_c in Angstrom
    n_radial: Optional[int] = None        # radial channels S
    n_basis: Optional[int] = None         # Gaussians per radial function K
    r_min: Optional[float] = None         # first Gaussian centre in Angstrom
    hidden: Optional[List[int]] = None    # widths of the hidden layers
    dtype: Optional[str] = None           # "float32" or "float64"


@dataclass
class TrainingConfig:
    epochs: int = 1000
    batch_size: int = 32
    lr: float = 3e-3                    # start learning rate (NTK parameterisation)
    lr_final_factor: float = 0.01       # the learning rate decays to lr * lr_final_factor
    decay: str = "linear"               # "linear" or "exponential"
    optimizer: str = "amsgrad"          # "adam" or "amsgrad"
    energy_weight: float = 1.0          # w_E: weight of (E - E_ref)^2 / N_atoms
    force_weight: float = 4.0           # w_F (A^2): weight of mean |F - F_ref|^2; 0 = energy only
    patience: Optional[int] = None      # early stopping: epochs without validation improvement
    seed: int = 0                       # parameter initialisation and batch order
    device: str = "cpu"
    threads: Optional[int] = None       # torch intra-op threads (default: torch's choice)
    eval_batch_size: int = 64


@dataclass
class FinetuneConfig:
    """Transfer learning (gmnn-finetune); the model's hyper-parameters come from the checkpoint."""
    pretrained: Optional[str] = None     # pre-trained checkpoint (or give --from on the command line)
    layer_lr_factor: float = 2.6         # lr of layer l = training.lr / factor^(L - l); 1 = one lr for all
    freeze: List[str] = field(default_factory=list)  # layers kept fixed: descriptor, dense0, dense1, ...
    refit_shift: bool = True             # re-fit per-element energy shifts on the new labels first
    refit_scale: bool = False            # also re-fit the energy scale (normally kept from pre-training)
    anchor_weight: float = 0.0           # L2-SP: + w * sum (theta - theta_pretrained)^2 in the loss


@dataclass
class Config:
    output_dir: str = "runs/gmnn"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    finetune: Optional[FinetuneConfig] = None  # only gmnn-finetune reads it; gmnn-train refuses it

    def validate(self) -> "Config":
        t = self.training
        checks = [
            (t.epochs >= 1, f"training.epochs must be >= 1, got {t.epochs}"),
            (t.batch_size >= 1, f"training.batch_size must be >= 1, got {t.batch_size}"),
            (t.lr > 0, f"training.lr must be positive, got {t.lr}"),
            (0 < t.lr_final_factor <= 1, f"training.lr_final_factor must be in (0, 1], got {t.lr_final_factor}"),
            (t.decay in ("linear", "exponential"), f"training.decay must be 'linear' or 'exponential', got {t.decay!r}"),
            (t.optimizer in ("adam", "amsgrad"), f"training.optimizer must be 'adam' or 'amsgrad', got {t.optimizer!r}"),
            (t.energy_weight >= 0 and t.force_weight >= 0, "training.energy_weight and force_weight must be >= 0"),
            (t.energy_weight + t.force_weight > 0, "training.energy_weight and force_weight cannot both be 0"),
            (self.model.dtype in (None, "float32", "float64"), f"model.dtype must be float32 or float64, got {self.model.dtype!r}"),
            (bool(self.data.train_file), "data.train_file is required"),
            (self.data.n_valid >= 0, f"data.n_valid must be >= 0, got {self.data.n_valid}"),
            (self.finetune is None or self.finetune.layer_lr_factor >= 1.0,
             f"finetune.layer_lr_factor must be >= 1, got {self.finetune and self.finetune.layer_lr_factor}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


def _build(cls, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key {name!r}{hint}")
        hint = hints[key]
        if typing.get_origin(hint) is typing.Union and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            hint = typing.get_args(hint)[0]  # an optional section, e.g. finetune: present when given
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, name)
        else:
            kwargs[key] = _coerce(value, hint, name)
    return cls(**kwargs)


def _coerce(value, hint, name):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {name!r}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{name}[{k}]") for k, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "1e-3" as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"config key {name!r}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_dict(values: dict) -> Config:
    return _build(Config, values, "").validate()


def load_config(path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    try:
        return config_from_dict(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
