"""Typed run configuration read from YAML.

Every field is documented here, defaults live here only, an unknown key is an error that
suggests the closest valid key, values are type-checked, and every field has a rule in
config_rules.RULES (ranges, finite numbers, known names) that `Config.validate` applies.
"""
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import yaml

from .config_rules import RULES, model_problem, shown


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


# gmnn-finetune's values for the training fields a config does not give: few labels and a
# pre-trained start need smaller batches and fewer epochs than training from scratch
# (measured: examples/transfer_learning/README.md, "Choosing the fine-tuned model").
FINETUNE_TRAINING_DEFAULTS = {"epochs": 400, "batch_size": 5, "lr": 3e-3}


@dataclass
class FinetuneConfig:
    """Transfer learning (gmnn-finetune); the model's hyper-parameters come from the checkpoint."""
    pretrained: Optional[str] = None     # pre-trained checkpoint (or give --from on the command line)
    layer_lr_factor: float = 2.6         # lr of layer l = training.lr / factor^(L - l); 1 = one lr for all
    freeze: List[str] = field(default_factory=list)  # layers kept fixed: descriptor, dense0, dense1, ...
    refit_shift: bool = True             # re-fit per-element energy shifts on the new labels first
    refit_scale: bool = False            # also re-fit the energy scale (normally kept from pre-training)
    anchor_weight: float = 0.0           # L2-SP: + w * sum (theta - theta_pretrained)^2 in the loss
    selection: str = "cv"                # which epoch to keep: "cv" (k-fold cross-validation over all
                                         # fine-tuning structures, then a fit on all of them) or
                                         # "validation" (best epoch on the validation structures)
    folds: int = 5                       # k of the cross-validation (at most the number of structures)
    replay_file: Optional[str] = None    # structures at the pre-training level (eV, A, forces), trained on
                                         # alongside the new labels with level-specific energy shifts, so
                                         # what they cover keeps the pre-trained behaviour (finetuning.replay_graphs)
    replay_index: str = ":"              # which of them, e.g. "0:200"


@dataclass
class Config:
    output_dir: str = "runs/gmnn"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    finetune: Optional[FinetuneConfig] = None  # only gmnn-finetune reads it; gmnn-train refuses it

    def validate(self) -> "Config":
        """Every field against its rule in RULES, then the rules that tie fields together."""
        for name, value in _fields(self):
            problem = None if value is None else RULES[name](value)
            if problem:
                raise ConfigError(f"{name} {problem}")
        t = self.training
        if t.energy_weight + t.force_weight == 0:
            raise ConfigError("training.energy_weight and force_weight cannot both be 0")
        problem = model_problem(self.model)
        if problem:
            raise ConfigError(problem)
        return self


def _fields(config, prefix=""):
    """(dotted name, value) of every field of `config` and its sections; a section that is not
    given (finetune: null) has no fields."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if any(dataclasses.is_dataclass(h) for h in (hints[f.name], *typing.get_args(hints[f.name]))):
            if value is not None:
                yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value


def field_names(cls=None, prefix=""):
    """Dotted names of all fields of the config schema (what RULES must cover)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = next((h for h in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(h)), None)
        if section is not None:
            yield from field_names(section, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


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
    for key, f in fields.items():  # sections not given are built too, so that they record it
        if key not in kwargs and dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], {}, f"{where}.{key}" if where else key)
    built = cls(**kwargs)
    built._given = frozenset(values)
    return built


def given(section, name: str) -> bool:
    """Whether the config file gave `name` in this section (a section made in code gave all)."""
    return name in getattr(section, "_given", (name,))


def _coerce(value, hint, name):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {name!r}: expected a list, got {shown(value)}")
        return [_coerce(v, args[0], f"{name}[{k}]") for k, v in enumerate(value)]
    if hint is float and (isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, str)):
        try:
            number = float(value)  # YAML reads "1e-3" as a string
        except (ValueError, OverflowError):
            number = None
        if number is not None and math.isfinite(number):
            return number
        if number is not None or isinstance(value, int):
            raise ConfigError(f"config key {name!r}: expected a finite number, got {shown(value)}")
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"config key {name!r}: expected {getattr(hint, '__name__', hint)}, got {shown(value)}")


def config_from_dict(values: dict) -> Config:
    return _build(Config, values, "").validate()


def load_config(path) -> Config:
    return load_yaml_config(path, config_from_dict)


def load_yaml_config(path, build):
    """`build(values)` of the YAML file at `path`; every problem a ConfigError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (YAML) file") from None
    try:
        return build(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
