"""Fuzzing gmnn-train's config (hypothesis): random edits of a working config over the whole
schema (wrong types, 0, negative, huge, inf, nan, empty strings and lists, unknown elements,
units and devices, lists for scalars, mappings for sections, unknown keys, broken YAML) run
through the real entry point, `gmnn.cli.train_main`, in-process. Every example must end with
exit status 0, or 2 and one line `error: ...` on stderr: an exception (a traceback) fails the
test, and so would a signal (it would kill pytest).

Most examples stop after the Trainer is built (config loaded and validated, data read and
checked, graphs, model, scale/shift fit, optimizer): the cheap part where the bad values bite.
A share of them trains for real: 1-2 epochs of a tiny model on 3 ethanol frames. With
`-m slow`: 5000 such examples, and 500 of gmnn-finetune (all run for real) from a tiny
pre-trained checkpoint.
"""
import contextlib
import io
import itertools
import os
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gmnn.cli import finetune_main, train_main
from gmnn.config import field_names
from gmnn.training import Trainer
from gmnn_testing import ETHANOL

FIELDS = sorted(field_names())
UNKNOWN_KEYS = ["data.trainfile", "model.cutof", "training.epoch", "finetune.pretrain", "bogus", "data.x.y"]
SECTIONS = ["data", "model", "training", "finetune"]

# values any field may get: wrong types and edge values
EDGE = [0, -1, 1, 2, 3, 10**18, -10**18, 10**400, 0.0, -0.5, 0.5, 1e-300, 1e308, float("inf"), float("-inf"),
        float("nan"), "", " ", "abc", "nan", "inf", "-inf", "1e999", "-1", "0", None, True, False, [], [0], [1],
        [-1], [2, 2], [""], ["H"], ["Qq"], [[1]], [None], {}, {"x": 1}, "kcal", "Hartree", "kcal/mol", "Bohr",
        "eV/Bohr", "cuda", "cuda:3", "cpu", "gpu", ":", "200:", "::0", "0:1", "-1", "descriptor", "dense0",
        "a" * 300, "\n", "\u00fc", "0x10", "1_000"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny data files: 4 ethanol frames (kcal/mol) as extxyz, without forces, as .npz, and a
    frame periodic in two directions without a cell."""
    tmp = tmp_path_factory.mktemp("fuzz_data")
    lines = ETHANOL.read_text().splitlines()
    tiny = tmp / "tiny.xyz"
    tiny.write_text("\n".join(lines[:44]) + "\n")
    no_forces = tmp / "no_forces.xyz"
    frames = [lines[11 * k: 11 * k + 11] for k in range(4)]
    no_forces.write_text("".join(f[0] + "\n" + f[1].replace(":forces:R:3", "") + "\n"
                                 + "".join(" ".join(a.split()[:4]) + "\n" for a in f[2:]) for f in frames))
    slab = tmp / "slab.xyz"
    slab.write_text("".join(f[0] + "\n" + f[1] + ' pbc="T T F"\n' + "\n".join(f[2:]) + "\n" for f in frames))
    from gmnn.data import read_structures
    structures = read_structures(tiny, energy_unit="eV")  # raw numbers: the .npz keeps kcal/mol
    npz = tmp / "tiny.npz"
    np.savez(npz, z=structures[0].numbers, R=np.stack([s.positions for s in structures]),
             E=np.array([s.energy for s in structures]), F=np.stack([s.forces for s in structures]))
    return {"tiny": str(tiny), "no_forces": str(no_forces), "slab": str(slab), "npz": str(npz),
            "ethanol": str(ETHANOL), "missing": str(tmp / "missing.xyz"), "dir": str(tmp)}


def good_values(files):
    """Values that are valid for each field (so that many examples get far, or train)."""
    data_files = [files["tiny"], files["npz"], files["no_forces"]]
    return {
        "output_dir": ["run", "nested/run"],
        "data.train_file": data_files + [files["slab"], files["missing"], files["dir"]],
        "data.train_index": [":", "0:3", "1:", "::2", "-3:", "5:"],
        "data.valid_file": [None] + data_files,
        "data.valid_index": [":", "3:", "-1", "0"],
        "data.test_file": [None] + data_files,
        "data.energy_key": ["auto", "none", "energy", "E"],
        "data.forces_key": ["auto", "none", "forces", "F"],
        "data.energy_unit": [None, "kcal/mol", "eV", "Hartree", "kJ/mol"],
        "data.force_unit": [None, "kcal/mol/Angstrom", "eV/Angstrom", "Hartree/Bohr"],
        "data.length_unit": [None, "Angstrom", "Bohr", "nm"],
        "data.level": [None, "wb97x_dz"],
        "data.n_train": [None, 1, 2, 3],
        "data.n_valid": [0, 1, 2, 4],
        "data.split_seed": [0, 7, 2**32 - 1],
        "data.shuffle_split": [True, False],
        "data.energy_outlier_limit": [None, 10.0, 1e-6, 1e300],
        "model.elements": [None, ["H", "C", "O"], ["O", "C", "H", "N"], ["H", "C"]],
        "model.cutoff": [None, 0.6, 3.0, 6.0, 50.0],
        "model.n_radial": [None, 1, 2, 3],
        "model.n_basis": [None, 1, 3, 64],
        "model.r_min": [None, 0.0, 0.5, 2.9],
        "model.hidden": [None, [8], [4, 4], []],
        "model.dtype": [None, "float32", "float64"],
        "training.epochs": [1, 2],
        "training.batch_size": [1, 2, 1000],
        "training.lr": [1e-3, 1e-2, 1e6, 1e-300],
        "training.lr_final_factor": [1.0, 0.01, 1e-300],
        "training.decay": ["linear", "exponential"],
        "training.optimizer": ["adam", "amsgrad"],
        "training.energy_weight": [0.0, 1.0, 1e300],
        "training.force_weight": [0.0, 4.0, 1e300],
        "training.patience": [None, 1, 5],
        "training.seed": [0, 1, 2**32 - 1],
        "training.device": ["cpu"],
        "training.threads": [None, 1],
        "training.eval_batch_size": [1, 64],
        "finetune.pretrained": [None, "x.ckpt"],
        "finetune.layer_lr_factor": [1.0, 2.6],
        "finetune.freeze": [[], ["descriptor"]],
        "finetune.refit_shift": [True, False],
        "finetune.refit_scale": [True, False],
        "finetune.anchor_weight": [0.0, 1.0],
    }


def base_config(files):
    return {"output_dir": "run",
            "data": {"train_file": files["tiny"], "energy_unit": "kcal/mol", "n_valid": 1},
            "model": {"hidden": [8], "n_radial": 2, "n_basis": 3, "cutoff": 4.0},
            "training": {"epochs": 1, "batch_size": 2, "threads": 1}}


def set_path(config, dotted, value):
    *sections, key = dotted.split(".")
    node = config
    for name in sections:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[key] = value


RAW_TEXTS = ["data: [", "- a\n- b\n", "42", "", "data:\n\ttrain_file: x", "data: {train_file: x}\n" * 2,
             "&a [*a]", "!!python/object:os.system {}", "data: !!binary aGVsbG8=", "\x00\x01\x02"]


@st.composite
def configs(draw, files):
    """(config, may_train): the base config with 1-3 edits by valid values ("good"), by any
    values ("edit"), or a section replaced by a wrong type, or a text that is not a config."""
    kind = draw(st.sampled_from(["good"] * 5 + ["edit"] * 8 + ["section", "raw", "binary"]))
    if kind == "raw":
        return draw(st.sampled_from(RAW_TEXTS)), False
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=64)), False
    config = base_config(files)
    if kind == "section":
        config[draw(st.sampled_from(SECTIONS))] = draw(st.sampled_from(EDGE))
        return config, False
    good = good_values(files)
    for _ in range(draw(st.integers(1, 3))):
        if kind == "good":
            key = draw(st.sampled_from([k for k in FIELDS if not k.startswith("finetune.")]))
            value = draw(st.sampled_from(good[key]))
        else:
            key = draw(st.sampled_from(FIELDS + UNKNOWN_KEYS))
            value = draw(st.sampled_from(good[key] if key in good and draw(st.booleans()) else EDGE))
        set_path(config, key, value)
    return config, draw(st.integers(0, 2)) == 0  # a third may train for real


EXAMPLE_NUMBERS = itertools.count()


def run_config(config, may_train, workdir, main=lambda path: train_main([str(path), "--no-progress"])):
    """gmnn-train (or `main`) on `config` in a fresh directory: (exit status, stderr, whether it
    trained). Examples that may not train, or whose config asks for more than 2 epochs, stop
    once the Trainer is built."""
    here = workdir / f"example{next(EXAMPLE_NUMBERS)}"
    here.mkdir()
    path = here / "config.yaml"
    if isinstance(config, bytes):
        path.write_bytes(config)
    elif isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        training = config.get("training")
        epochs = training.get("epochs") if isinstance(training, dict) else None
        may_train = may_train and type(epochs) is int and epochs <= 2
    stop_early = contextlib.nullcontext() if may_train else mock.patch.object(Trainer, "run", lambda self: {})
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(here)  # relative output_dir values land here
    try:
        with stop_early, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(path)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(1)
    return code, err.getvalue(), may_train and code == 0


def assert_clean_exit(code, err, config):
    if code == 0:
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        f"exit status {code}, stderr:\n{err}\nconfig: {config!r}"


FUZZ = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_runs")


@pytest.fixture(scope="module")
def outcomes():
    """What the examples reached (printed at the end of the module, with -s)."""
    counts = {}
    yield counts
    print(f"\nconfig fuzz: {sum(counts.values())} examples: {counts}")


def fuzz_one(files, workdir, outcomes, data):
    config, may_train = data.draw(configs(files))
    code, err, trained = run_config(config, may_train, workdir)
    outcome = "trained" if trained else "built" if code == 0 else f"exit {code}"
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert_clean_exit(code, err, config)


@settings(max_examples=500, **FUZZ)
@given(data=st.data())
def test_train_config_fuzz_exits_0_or_with_one_error_line(files, workdir, outcomes, data):
    fuzz_one(files, workdir, outcomes, data)


@pytest.mark.slow
@settings(max_examples=5000, **FUZZ)
@given(data=st.data())
def test_train_config_fuzz_long(files, workdir, outcomes, data):
    """`pytest -m slow tests/test_config_fuzz.py`: ten times the examples."""
    fuzz_one(files, workdir, outcomes, data)


# ---- gmnn-finetune: the same edits, a finetune: section, a pre-trained checkpoint ---------------

@pytest.fixture(scope="module")
def pretrained(files, workdir):
    config = base_config(files)
    config["output_dir"] = str(workdir / "pretrained")
    code, err, trained = run_config(config, True, workdir)
    assert trained, err
    return workdir / "pretrained" / "best.ckpt"


@st.composite
def finetune_configs(draw, files):
    config, _ = draw(configs(files))
    if isinstance(config, dict):
        if isinstance(config.get("model"), dict):
            config["model"] = {k: v for k, v in config["model"].items() if k not in ("hidden", "n_radial", "n_basis",
                                                                                     "cutoff")}  # the checkpoint's
        if "finetune" not in config:
            config["finetune"] = {"selection": draw(st.sampled_from(["validation", "cv"])), "folds": 2}
        training = config.get("training")
        epochs = training.get("epochs") if isinstance(training, dict) else None
        assume(not (type(epochs) is int and epochs > 2))  # a valid long run is not a fuzz example
    return config


@pytest.mark.slow
@settings(max_examples=500, **FUZZ)
@given(data=st.data())
def test_finetune_config_fuzz(files, workdir, pretrained, outcomes, data):
    """gmnn-finetune --from a tiny pre-trained model, every example run for real (1-2 epochs)."""
    config = data.draw(finetune_configs(files))
    main = lambda path: finetune_main([str(path), "--from", str(pretrained), "--no-progress"])
    code, err, trained = run_config(config, True, workdir, main)
    outcome = "fine-tuned" if trained else f"finetune exit {code}"
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert_clean_exit(code, err, config)
