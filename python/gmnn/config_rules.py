"""One rule per config field (RULES, by dotted name), the rules that tie the model's fields
together, and the same rules for command-line options (`check_option`).

A rule gets a type-checked value (never None: a null Optional field means "not given") and
returns None, or what is wrong, which follows the key's name in the error message."""
import dataclasses
import math
import re


def shown(value, limit=60) -> str:
    """repr of a value for a one-line message, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def at_least(lo, unit=""):
    return lambda v: None if v >= lo else f"must be >= {lo}{unit}, got {shown(v)}"


def _between(lo, hi, unit=""):
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}{unit}, got {shown(v)}"


def _positive(v):
    return None if v > 0 else f"must be positive, got {shown(v)}"


def positive_number(unit):
    """For command-line floats, which argparse lets be nan and inf."""
    return lambda v: None if math.isfinite(v) and v > 0 else f"must be a positive number of {unit}, got {shown(v)}"


def check_option(option: str, value, rule) -> None:
    """A command-line option against a rule of this module: a ConfigError `--option must ...`."""
    from .config import ConfigError
    problem = rule(value)
    if problem:
        raise ConfigError(f"{option} {problem}")


def _positive_at_most(hi, unit, why):
    return lambda v: _positive(v) or (None if v <= hi else f"must be at most {hi}{unit} ({why}), got {shown(v)}")


def _one_of(*names):
    return lambda v: None if v in names else f"must be one of {', '.join(map(repr, names))}, got {shown(v)}"


def _text(v):
    return None if v.strip() else f"must not be empty, got {shown(v)}"


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
        return f"has unknown element symbol(s) {shown(unknown)} (symbols are written like H, C, O, Cl)"
    if len(set(symbols)) != len(symbols):
        return f"lists an element twice, got {shown(symbols)}"
    return None


MAX_WIDTH, MAX_LAYERS = 16384, 16


def _hidden(widths):
    if len(widths) > MAX_LAYERS:
        return f"must have at most {MAX_LAYERS} hidden layers, got {len(widths)}"
    bad = [w for w in widths if not 1 <= w <= MAX_WIDTH]
    return f"widths must be between 1 and {MAX_WIDTH}, got {shown(widths)}" if bad else None


def _freeze(names):
    bad = [n for n in names if not re.fullmatch(r"descriptor|dense\d+", n)]
    if bad:
        return f"names layers 'descriptor', 'dense0', 'dense1', ...; got {shown(bad)}"
    return None if len(set(names)) == len(names) else f"names a layer twice, got {shown(names)}"


def _device(v):
    match = re.fullmatch(r"(cpu|cuda|mps)(:(\d+))?", v)
    if not match:
        return f"must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {shown(v)}"
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
    "finetune.replay_file": _text,
    "finetune.replay_index": _index,
}


def model_problem(m):
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
