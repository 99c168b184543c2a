"""The data of a run, prepared in the order it flows: the config's files are read once (train,
validation and test structures; labels checked against what the config trains), then the
model's elements are decided (given, the pre-trained model's, or those of the training data),
then every structure becomes a graph at the model's cutoff."""
import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .config import Config
from .data import DataError, Structure, check_energy_outliers, read_structures, split_indices
from .graph import StructureGraph, build_graphs
from .model import ModelOptions

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """The structures of a config's files: read, split and checked, not yet graphs."""
    train: List[Structure]
    valid: List[Structure]
    test: List[Structure]


@dataclass
class PreparedData:
    train: List[StructureGraph]
    valid: List[StructureGraph]
    test: List[StructureGraph]
    elements: List[int]


def load_data(config: Config, elements: Optional[List[int]] = None, cutoff: Optional[float] = None) -> PreparedData:
    """Structures of the config's files as graphs; `elements` and `cutoff` default to the
    config's (a fine-tune passes its pre-trained model's)."""
    splits = read_splits(config)
    if elements is None:
        elements = data_elements(config, splits.train)
    if cutoff is None:
        cutoff = ModelOptions.from_config(config.model, elements).cutoff
    return graphs_of(splits, elements, cutoff)


def read_splits(config: Config) -> Splits:
    """The config's train, validation and test structures, each file read once; labels that
    cannot train what the config asks for, and a test file in other units, are errors."""
    d = config.data
    read = lambda path, index=":": read_structures(path, energy_key=d.energy_key, forces_key=d.forces_key,
                                                   energy_unit=d.energy_unit, force_unit=d.force_unit,
                                                   length_unit=d.length_unit, level=d.level, index=index)
    structures = read(d.train_file, d.train_index)
    if d.valid_file:
        train_s, valid_s = structures[:d.n_train] if d.n_train else structures, read(d.valid_file, d.valid_index)
        if d.n_valid:
            valid_s = valid_s[:d.n_valid]
    else:
        n_train = d.n_train if d.n_train is not None else len(structures) - d.n_valid
        tr, va = split_indices(len(structures), n_train, d.n_valid, d.split_seed, d.shuffle_split)
        train_s, valid_s = [structures[k] for k in tr], [structures[k] for k in va]
    test_s = read(d.test_file) if d.test_file else []
    check_labels(train_s + valid_s, config)
    check_energy_outliers(test_s, d.energy_outlier_limit, reference=train_s + valid_s)  # test_file's units
    return Splits(train_s, valid_s, test_s)


def data_elements(config: Config, train: Sequence[Structure]) -> List[int]:
    """The atomic numbers of a new model: `model.elements` if given, else those of `train`."""
    if config.model.elements:
        from ase.data import atomic_numbers
        return sorted(atomic_numbers[s] for s in config.model.elements)
    return sorted({int(z) for s in train for z in s.numbers})


def graphs_of(splits: Splits, elements: Sequence[int], cutoff: float) -> PreparedData:
    """Every structure as a graph for a model of these elements and cutoff (an
    UnknownElementError names a structure with an element the model lacks)."""
    elements = list(elements)
    return PreparedData(build_graphs(splits.train, elements, cutoff, progress=True),
                        build_graphs(splits.valid, elements, cutoff, progress=True),
                        build_graphs(splits.test, elements, cutoff, progress=True), elements)


def check_labels(structures, config: Config) -> None:
    """Labels that cannot train what the config asks for: an error or a loud warning now,
    not a model that silently learned something else."""
    t, d = config.training, config.data
    has_energy = any(s.energy is not None for s in structures)
    has_forces = any(s.forces is not None for s in structures)
    if not (has_energy and t.energy_weight > 0) and not (has_forces and t.force_weight > 0):
        raise DataError(f"{d.train_file}: no labels to train on: energies {'found' if has_energy else 'missing'} "
                        f"(energy_weight {t.energy_weight}), forces {'found' if has_forces else 'missing'} "
                        f"(force_weight {t.force_weight}); set data.energy_key / forces_key?")
    replay = config.finetune is not None and config.finetune.replay_file  # its forces are what force_weight trains
    if t.force_weight > 0 and not has_forces and not replay:
        log.warning("%s: no structure has forces, so training uses energies only (force_weight %g has no "
                    "effect); set training.force_weight: 0 to say so", d.train_file, t.force_weight)
    check_energy_outliers(structures, d.energy_outlier_limit,
                          remedy="Fix the data, or set data.energy_outlier_limit: null to train anyway")
