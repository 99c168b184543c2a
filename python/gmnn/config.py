"""Typed run configuration read from YAML.

Every field is documented here, defaults live here only, an unknown key is an error that
suggests the closest valid key, values are type-checked, and every field has a rule in RULES
(ranges, finite numbers, known names) that `Config.validate` applies.
"""
import dataclasses
import difflib
import math
import re
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


# gmnn-finetune's values for the training fields a config does not give: few labels and a
# pre-trained start need smaller batches and fewer epochs than training from scratch
# (measured: examples/transfer_learning/README.md, "Choosing the fine-tuned model").
FINETUNE_TRAINING_DEFAULTS = {"epochs": 800, "batch_size": 5, "lr": 3e-3}


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
        problem = _model_problem(self.model)
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


def _shown(value, limit=60) -> str:
    """repr of a value for a one-line message, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- one rule per field ------------------------------------------------------------------
# A rule gets a type-checked value (never None: a null Optional field means "not given") and
# returns None, or what is wrong, which follows the key's name in the error message.

def at_least(lo, unit=""):
    return lambda v: None if v >= lo else f"must be >= {lo}{unit}, got {_shown(v)}"


def _between(lo, hi, unit=""):
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}{unit}, got {_shown(v)}"


def _positive(v):
    return None if v > 0 else f"must be positive, got {_shown(v)}"


def positive_number(unit):
    """For command-line floats, which argparse lets be nan and inf."""
    return lambda v: None if math.isfinite(v) and v > 0 else f"must be a positive number of {unit}, got {_shown(v)}"


def check_option(option: str, value, rule) -> None:
    """A command-line option against a rule of this module: a ConfigError `--option must ...`."""
    problem = rule(value)
    if problem:
        raise ConfigError(f"{option} {problem}")


def _positive_at_most(hi, unit, why):
    return lambda v: _positive(v) or (None if v <= hi else f"must be at most {hi}{unit} ({why}), got {_shown(v)}")


def _one_of(*names):
    return lambda v: None if v in names else f"must be one of {', '.join(map(repr, names))}, got {_shown(v)}"


def _text(v):
    return None if v.strip() else f"must not be empty, got {_shown(v)}"


def _any_bool(v):
    return None


def _index(v):
    from .data import DataError, parse_index
    try:
        parse_index(v)
    except DataError as exc:
        return f"is not a frame selection: {exc}"
    return None


def _unit(kind):
    def rule(v):
        from .units import energy_factor, force_factor, length_factor
        try:
            {"energy": energy_factor, "force": force_factor, "length": length_factor}[kind](v)
        except ValueError as exc:
            return f"is not a unit: {exc}"
        return None
    return rule


def _elements(symbols):
    from ase.data import chemical_symbols
    if not symbols:
        return "must list at least one element (or be left out: the elements of the training data)"
    unknown = [s for s in symbols if s not in chemical_symbols[1:119]]
    if unknown:
        return f"has unknown element symbol(s) {_shown(unknown)} (symbols are written like H, C, O, Cl)"
    if len(set(symbols)) != len(symbols):
        return f"lists an element twice, got {_shown(symbols)}"
    return None


MAX_WIDTH, MAX_LAYERS = 16384, 16


def _hidden(widths):
    if len(widths) > MAX_LAYERS:
        return f"must have at most {MAX_LAYERS} hidden layers, got {len(widths)}"
    bad = [w for w in widths if not 1 <= w <= MAX_WIDTH]
    return f"widths must be between 1 and {MAX_WIDTH}, got {_shown(widths)}" if bad else None


def _freeze(names):
    bad = [n for n in names if not re.fullmatch(r"descriptor|dense\d+", n)]
    if bad:
        return f"names layers 'descriptor', 'dense0', 'dense1', ...; got {_shown(bad)}"
    return None if len(set(names)) == len(names) else f"names a layer twice, got {_shown(names)}"


def _device(v):
    match = re.fullmatch(r"(cpu|cuda|mps)(:(\d+))?", v)
    if not match:
        return f"must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {_shown(v)}"
    import torch
    kind, number = match.group(1), match.group(3)
    if kind == "cuda":
        if not torch.cuda.is_available():
            return (f"is {v!r}, but CUDA is not available here (torch.cuda.is_available() is False: no GPU, "
                    "or a torch built without CUDA); use device: cpu")
        if number is not None and int(number) >= torch.cuda.device_count():
            return f"is {v!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)"
    if kind == "mps" and not torch.backends.mps.is_available():
        return f"is {v!r}, but MPS (Apple GPU) is not available here; use device: cpu"
    return None


SEED_LIMIT = 2**32 - 1
MAX_CUTOFF = 50.0     # Angstrom: beyond any short-range potential; periodic neighbour lists grow as r_c^3
MAX_PARAMETERS = 10**8  # 0.4 GB in float32, three times that with the optimizer's moments

RULES = {
    "output_dir": _text,
    "data.train_file": lambda v: None if v.strip() else "is required (the structures to train on)",
    "data.train_index": _index,
    "data.valid_file": _text,
    "data.valid_index": _index,
    "data.test_file": _text,
    "data.energy_key": _text,
    "data.forces_key": _text,
    "data.energy_unit": _unit("energy"),
    "data.force_unit": _unit("force"),
    "data.length_unit": _unit("length"),
    "data.level": _text,
    "data.n_train": at_least(1),
    "data.n_valid": at_least(0),
    "data.split_seed": _between(0, SEED_LIMIT),
    "data.shuffle_split": _any_bool,
    "data.energy_outlier_limit": lambda v: _positive(v) and f"{_positive(v)} (eV/atom; null turns the check off)",
    "model.elements": _elements,
    "model.cutoff": _positive_at_most(MAX_CUTOFF, " A", "beyond any short-range potential"),
    "model.n_radial": _between(1, 32),
    "model.n_basis": _between(1, 64),
    "model.r_min": at_least(0.0, " A"),
    "model.hidden": _hidden,
    "model.dtype": _one_of("float32", "float64"),
    "training.epochs": at_least(1),
    "training.batch_size": at_least(1),
    "training.lr": _positive,
    "training.lr_final_factor": lambda v: None if 0 < v <= 1 else f"must be in (0, 1], got {v!r}",
    "training.decay": _one_of("linear", "exponential"),
    "training.optimizer": _one_of("adam", "amsgrad"),
    "training.energy_weight": at_least(0.0),
    "training.force_weight": at_least(0.0),
    "training.patience": lambda v: at_least(1)(v) and f"{at_least(1)(v)} (or null: no early stopping)",
    "training.seed": _between(0, SEED_LIMIT),
    "training.device": _device,
    "training.threads": lambda v: _between(1, 1024)(v) and f"{_between(1, 1024)(v)} (or null: torch's choice)",
    "training.eval_batch_size": at_least(1),
    "finetune.pretrained": _text,
    "finetune.layer_lr_factor": at_least(1.0),
    "finetune.freeze": _freeze,
    "finetune.refit_shift": _any_bool,
    "finetune.refit_scale": _any_bool,
    "finetune.anchor_weight": at_least(0.0),
    "finetune.selection": _one_of("cv", "validation"),
    "finetune.folds": at_least(2),
}


def _model_problem(m: ModelConfig):
    """The rules that tie the model's fields together, with ModelOptions' defaults for those not given."""
    from .descriptor import n_features
    from .model import ModelOptions
    defaults = {f.name: f.default for f in dataclasses.fields(ModelOptions) if f.name in ModelOptions.CONFIG_FIELDS}
    value = lambda name: defaults[name] if getattr(m, name) is None else getattr(m, name)
    if value("r_min") >= value("cutoff"):
        return f"model.r_min ({value('r_min')}) must be below model.cutoff ({value('cutoff')})"
    widths = [n_features(value("n_radial")), *value("hidden"), 1]
    parameters = sum(a * b + b for a, b in zip(widths, widths[1:]))
    if parameters > MAX_PARAMETERS:
        return (f"model.hidden {list(value('hidden'))} with model.n_radial {value('n_radial')} gives a network of "
                f"{parameters:.3g} parameters, more than {MAX_PARAMETERS:.0e}; choose narrower layers")
    return None


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
            raise ConfigError(f"config key {name!r}: expected a list, got {_shown(value)}")
        return [_coerce(v, args[0], f"{name}[{k}]") for k, v in enumerate(value)]
    if hint is float and (isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, str)):
        try:
            number = float(value)  # YAML reads "1e-3" as a string
        except (ValueError, OverflowError):
            number = None
        if number is not None and math.isfinite(number):
            return number
        if number is not None or isinstance(value, int):
            raise ConfigError(f"config key {name!r}: expected a finite number, got {_shown(value)}")
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"config key {name!r}: expected {getattr(hint, '__name__', hint)}, got {_shown(value)}")


def config_from_dict(values: dict) -> Config:
    return _build(Config, values, "").validate()


def load_config(path) -> Config:
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
        return config_from_dict(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
