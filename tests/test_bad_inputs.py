"""Rows of docs/reliability.md not covered elsewhere: empty and corrupt inputs, labels that do
not fit the config, and a full disk. Each case gives a named error or a defined result."""
import errno
import itertools
import logging
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms

from gmnn.calculator import GMNNCalculator
from gmnn.config import config_from_dict
from gmnn.data import DataError, read_structures
from gmnn.neighbors import neighbor_list
from gmnn.dataset import load_data
from gmnn.training import Trainer
from gmnn_testing import ANI, ETHANOL, small_model


def ethanol_config(tmp_path, data=None, **training):
    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "data": {"train_file": str(ETHANOL), "train_index": "0:20", "valid_file": str(ETHANOL),
                 "valid_index": "90:", "energy_unit": "kcal/mol", **(data or {})},
        "model": {"hidden": [16], "dtype": "float64"},
        "training": {"epochs": 2, "batch_size": 10, "lr": 0.01, **training},
    })


# ---- structures ------------------------------------------------------------------------

def test_empty_structure():
    """No atoms: energy 0 and empty arrays from the calculator; a training file with an empty
    frame is an error naming it."""
    atoms = Atoms()
    atoms.calc = GMNNCalculator(small_model())
    assert atoms.get_potential_energy() == 0.0
    assert atoms.get_forces().shape == (0, 3)


def test_empty_frame_in_a_data_file(tmp_path):
    p = tmp_path / "empty.xyz"
    p.write_text("1\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"F F F\"\nH 0 0 0\n"
                 "0\nProperties=species:S:1:pos:R:3 energy=0.0 pbc=\"F F F\"\n")
    with pytest.raises(DataError, match=r"empty.xyz\[1\].*no atoms"):
        read_structures(p)


# ---- cells and periodic boundary conditions ------------------------------------------------

PBCS = list(itertools.product([False, True], repeat=3))
CELLS = {  # rows are the cell vectors a, b, c
    "no cell": np.zeros((3, 3)),
    "collinear": np.array([[4.0, 0, 0], [8.0, 0, 0], [0, 0, 0]]),       # b = 2a, c = 0
    "flat": np.array([[4.0, 0, 0], [0.5, 4.2, 0], [4.5, 4.2, 0]]),      # c = a + b: zero volume
    "good": np.array([[4.0, 0, 0], [0.5, 4.2, 0], [0.3, -0.4, 3.9]]),
}
THREE_ATOMS = np.array([[0.1, 0.2, 0.3], [1.2, 0.1, 0.2], [0.4, 1.4, 1.1]])


def periodic_cell_is_valid(cell, pbc):
    """The rule: the cell vectors of the periodic directions are non-zero and linearly independent."""
    periodic = cell[list(pbc)]
    return len(periodic) == 0 or np.linalg.matrix_rank(periodic) == len(periodic)


def brute_force_pairs(positions, cutoff, cell, pbc):
    """All (i, j, x_j - x_i + shift) closer than the cutoff, images only along periodic vectors."""
    periodic = cell[list(pbc)]
    # images needed along each periodic vector: cutoff / (thickness of the cell between its faces)
    reps = [int(np.ceil(cutoff * np.linalg.norm(row))) + 1 for row in np.linalg.pinv(periodic).T] if len(periodic) else []
    pairs = set()
    for shift in itertools.product(*[range(-r, r + 1) for r in reps]):
        offset = np.array(shift, dtype=float) @ periodic if reps else np.zeros(3)
        for i, j in itertools.product(range(len(positions)), repeat=2):
            d = positions[j] + offset - positions[i]
            if 0 < np.linalg.norm(d) < cutoff:
                pairs.add((i, j) + tuple(np.round(d, 8)))
    return pairs


@pytest.mark.parametrize("backend", ["vesin", "ase"])
@pytest.mark.parametrize("cell_name", list(CELLS))
@pytest.mark.parametrize("pbc", PBCS, ids=["".join("TF"[not p] for p in pbc) for pbc in PBCS])
def test_periodic_direction_needs_an_independent_cell_vector(pbc, cell_name, backend):
    """Every pbc combination x {no cell, degenerate cells, good cell}, both neighbour-list codes:
    a periodic direction without a usable cell vector is a ValueError naming the problem (vesin
    used to die of SIGFPE, or throw vector::_M_default_append; ASE gave LinAlgError or called an
    atom its own coincident neighbour); any other cell gives the brute-force pairs."""
    cell = CELLS[cell_name]
    if not periodic_cell_is_valid(cell, pbc):
        with pytest.raises(ValueError, match=r"pbc [TF ]+.*(zero \(no Lattice given\?\)|linearly dependent)"):
            neighbor_list(THREE_ATOMS, 3.0, cell, pbc, backend=backend)
        return
    nl = neighbor_list(THREE_ATOMS, 3.0, cell, pbc, backend=backend)
    got = {(int(i), int(j)) + tuple(np.round(d, 8)) for i, j, d in zip(nl.centers, nl.neighbors, nl.vectors)}
    assert got == brute_force_pairs(THREE_ATOMS, 3.0, cell, pbc)


def extxyz_frame(cell, pbc, energy=-1.0):
    lattice = "" if cell is None else 'Lattice="' + " ".join(f"{x:.6f}" for x in np.ravel(cell)) + '" '
    flags = " ".join("T" if p else "F" for p in pbc)
    atoms = "".join(f"H {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in THREE_ATOMS)
    return f"3\n{lattice}Properties=species:S:1:pos:R:3 energy={energy} pbc=\"{flags}\"\n{atoms}"


def test_data_file_cells_are_checked_for_every_pbc_combination(tmp_path):
    """Frame 1 of each file has one pbc x cell combination (written with a Lattice, and once
    without one): the reader accepts exactly the valid ones and names file[1] otherwise."""
    for (cell_name, cell), pbc in itertools.product([("no Lattice", None), *CELLS.items()], PBCS):
        p = tmp_path / "cells.xyz"
        p.write_text(extxyz_frame(None, (False,) * 3) + extxyz_frame(cell, pbc))
        valid = periodic_cell_is_valid(np.zeros((3, 3)) if cell is None else cell, pbc)
        if valid:
            assert len(read_structures(p)) == 2, (cell_name, pbc)
        else:
            with pytest.raises(DataError, match=r"cells.xyz\[1\]: field 'cell': pbc [TF ]+"):
                read_structures(p)


def test_coincident_atoms_in_a_data_file_are_named_when_graphs_are_built(tmp_path):
    from gmnn.graph import build_graphs
    p = tmp_path / "twice.xyz"
    p.write_text("2\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0.7\n"
                 "2\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"F F F\"\nH 0 0 0.5\nH 0 0 0.5\n")
    with pytest.raises(DataError, match=r"twice.xyz\[1\]: atoms 0 and 1 are at the same position"):
        build_graphs(read_structures(p), [1], 3.0)


CELL_CRASHES = """
import numpy as np, sys
from gmnn.data import DataError, read_structures
from gmnn.neighbors import neighbor_list
atoms = np.array([[0.1, 0.2, 0.3], [1.2, 0.1, 0.2], [0.4, 1.4, 1.1]])
for pbc in ([True, True, False], [True, False, True], [False, True, True], [True, False, False]):
    for backend in ("vesin", "ase"):
        try:
            neighbor_list(atoms, 3.0, np.zeros((3, 3)), pbc, backend=backend)
        except ValueError as exc:
            print("refused", pbc, backend, exc)
try:
    read_structures(sys.argv[1])
except DataError as exc:
    print("refused", exc)
"""


def test_periodic_without_a_cell_does_not_kill_the_process(tmp_path):
    """In a subprocess, because the failure this guards against is a signal: pbc [T,T,F] with no
    cell (SIGFPE inside vesin) and an extxyz frame with pbc="T T F" and no Lattice."""
    p = tmp_path / "slab_without_lattice.xyz"
    p.write_text(extxyz_frame(None, (True, True, False)))
    proc = subprocess.run([sys.executable, "-c", CELL_CRASHES, str(p)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.count("refused") == 9, proc.stdout
    assert "slab_without_lattice.xyz[0]: field 'cell': pbc T T F is periodic along cell vectors a and b" in proc.stdout


# ---- data files --------------------------------------------------------------------------

def test_corrupt_hdf5(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=r"garbage.h5: not a readable HDF5 file"):
        read_structures(garbage, level="wb97x_dz")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(ANI.read_bytes()[: ANI.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated.h5"):
        read_structures(truncated, level="wb97x_dz")


def test_extxyz_frame_without_forces_is_named(tmp_path):
    p = tmp_path / "partial.xyz"
    p.write_text("1\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc=\"F F F\"\nH 0 0 0 0 0 0\n"
                 "1\nProperties=species:S:1:pos:R:3 energy=-1.1 pbc=\"F F F\"\nH 0 0 0\n")
    with pytest.raises(DataError, match=r"partial.xyz\[1\].*'forces' missing"):
        read_structures(p)


def test_inconsistent_atom_count_in_extxyz(tmp_path):
    p = tmp_path / "short.xyz"
    text = ETHANOL.read_text().splitlines()
    p.write_text("\n".join(text[:2] + text[2:10] + text[11:22]) + "\n")  # frame 0 says 9 atoms, has 8
    with pytest.raises(DataError, match=r"short.xyz: cannot be read"):
        read_structures(p)


def test_training_without_force_labels_warns_and_uses_energies(tmp_path, caplog):
    frames = read_structures(ETHANOL, energy_unit="kcal/mol", index="0:30")
    import ase.io
    p = tmp_path / "energies_only.xyz"
    atoms = [Atoms(s.numbers, s.positions, info={"energy": s.energy}) for s in frames]
    ase.io.write(p, atoms, format="extxyz")
    config = ethanol_config(tmp_path, data={"train_file": str(p), "valid_file": str(p), "train_index": "0:20",
                                            "valid_index": "20:", "energy_unit": "eV"}, force_weight=4.0)
    with caplog.at_level(logging.WARNING, logger="gmnn.dataset"):
        load_data(config)
    assert "no structure has forces" in caplog.text
    config.training.energy_weight = 0.0
    with pytest.raises(DataError, match="no labels to train on"):
        load_data(config)


def test_mixed_energy_units_are_caught_before_training(tmp_path):
    """Five frames of rMD17 ethanol in eV among others in kcal/mol: a per-element fit puts them
    hundreds of eV/atom away, and the error names them."""
    text = ETHANOL.read_text().splitlines()
    lines = []
    for k in range(30):
        frame = text[11 * k: 11 * (k + 1)]
        if k in (3, 17, 21, 22, 25):  # rewrite the energy of these frames in eV
            head, value_and_rest = frame[1].split("energy=")
            value, *rest = value_and_rest.split(" ", 1)
            frame[1] = f"{head}energy={float(value) * 0.0433641043:.8f} " + "".join(rest)
        lines += frame
    p = tmp_path / "mixed.xyz"
    p.write_text("\n".join(lines) + "\n")
    config = ethanol_config(tmp_path, data={"train_file": str(p), "valid_file": None, "train_index": ":",
                                            "n_valid": 5})
    with pytest.raises(DataError, match=r"5 structure\(s\).*mixed.xyz\[(3|17|21|22|25)\].*Mixed energy units"):
        load_data(config)
    config.data.energy_outlier_limit = None
    assert len(load_data(config).train) == 25


# ---- disk space --------------------------------------------------------------------------

def test_too_little_disk_space_fails_before_training(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=100_000))
    with pytest.raises(OSError, match=r"0.1 MiB free, but training needs about .* MiB"):
        Trainer(ethanol_config(tmp_path), show_progress=False).run()
    assert not (tmp_path / "run" / "best.ckpt").exists()


def test_disk_full_during_training_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """The disk fills while epoch 2's checkpoint is written: a named error, the temporary file
    removed, and last.ckpt still holds epoch 1 (so --resume continues from there)."""
    import gmnn.checkpoint as checkpoint
    trainer = Trainer(ethanol_config(tmp_path), show_progress=False)
    real_save, calls = torch.save, {"n": 0}

    def filling_disk(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # best (epoch 0), best + last (epoch 1), then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(checkpoint.torch, "save", filling_disk)
    with pytest.raises(checkpoint.CheckpointError, match=r"disk full.*is unchanged.*--resume"):
        trainer.run()
    run = tmp_path / "run"
    assert checkpoint.load_checkpoint(run / "last.ckpt")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))


# ---- configs and command lines: one line `error: ...`, exit status 2 ---------------------------

def one_line_error(code, err):
    """The message of a user error as the CLI prints it: exit status 2, one line `error: ...`."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), f"exit status {code}, stderr:\n{err}"
    return lines[0]


def run_train(tmp_path, capsys, data=None, model=None, training=None):
    """gmnn-train in-process on 3 (+1 validation) rMD17 ethanol frames with a tiny model."""
    import yaml
    from gmnn.cli import train_main
    config = {"output_dir": str(tmp_path / "run"),
              "data": {"train_file": str(ETHANOL), "train_index": "0:3", "valid_file": str(ETHANOL),
                       "valid_index": "90:91", "energy_unit": "kcal/mol", **(data or {})},
              "model": {"hidden": [8], **(model or {})},
              "training": {"epochs": 1, "batch_size": 2, "threads": 1, **(training or {})}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        code = train_main([str(path), "--no-progress"])
    finally:
        torch.set_num_threads(1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("section, values, message", [
    ("training", {"patience": -1}, r"training.patience must be >= 1, got -1 \(or null"),
    ("training", {"threads": 0}, r"training.threads must be between 1 and 1024, got 0"),
    ("data", {"energy_outlier_limit": "nan"}, r"'data.energy_outlier_limit': expected a finite number, got 'nan'"),
    ("data", {"energy_outlier_limit": 0.0}, r"data.energy_outlier_limit must be positive"),
    ("model", {"cutoff": float("inf")}, r"'model.cutoff': expected a finite number, got inf"),
    ("model", {"hidden": [0]}, r"model.hidden widths must be between 1 and 16384, got \[0\]"),
    ("model", {"hidden": [100000]}, r"model.hidden widths must be between 1 and 16384"),
    ("model", {"hidden": [16384] * 2}, r"2.74e\+08 parameters, more than 1e\+08"),
    ("data", {"energy_unit": "kcal"}, r"unknown energy unit 'kcal'; known: eV, meV, kcal/mol, kJ/mol, Hartree"),
    ("model", {"elements": ["Qq"]}, r"model.elements has unknown element symbol\(s\) \['Qq'\]"),
    ("training", {"seed": -1}, r"training.seed must be between 0 and 4294967295"),
    ("training", {"lr": 10**400}, r"'training.lr': expected a finite number"),
    ("data", {"train_index": "::0"}, r"data.train_index is not a frame selection: bad index '::0': the step"),
])
def test_bad_config_values_are_one_line_errors(tmp_path, capsys, section, values, message):
    """Each used to be accepted (patience -1, threads 0, a NaN outlier limit) or to end in a
    traceback (an infinite cutoff in vesin, a zero-width layer, an unknown unit or element)."""
    code, out, err = run_train(tmp_path, capsys, **{section: values})
    line = one_line_error(code, err)
    assert re.search(message, line), line
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_cuda_device_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = one_line_error(*run_train(tmp_path, capsys, training={"device": "cuda"})[::2])
    assert "training.device is 'cuda', but CUDA is not available here (torch.cuda.is_available() is False" in line


def test_every_config_field_has_a_rule():
    from gmnn.config import field_names
    from gmnn.config_rules import RULES
    assert sorted(field_names()) == sorted(RULES)


def test_first_frame_without_energy_stops_training_with_a_true_message(tmp_path, capsys):
    """It used to end in a traceback saying "no structure has an energy label", untrue: only
    frame 0 lacked one."""
    lines = ETHANOL.read_text().splitlines()
    head = lines[1].split(" energy=")[0]
    p = tmp_path / "first_without_energy.xyz"
    p.write_text("\n".join(lines[:1] + [head] + lines[2:33]) + "\n")
    line = one_line_error(*run_train(tmp_path, capsys, data={"train_file": str(p), "train_index": ":"})[::2])
    assert re.search(r"first_without_energy.xyz\[0\]: field 'energy' missing, but 2 of the 3 frames have it", line), line


def test_empty_train_index_selection_says_so(tmp_path, capsys):
    """"200:" on a 100-frame file used to be blamed on "unknown elements" or missing labels."""
    line = one_line_error(*run_train(tmp_path, capsys, data={"train_index": "200:"})[::2])
    assert "rmd17_ethanol_100.xyz: index '200:' selects no structures (the file has 100)" in line


def write_in_ev(path, frames):
    import ase.io
    atoms = [Atoms(s.numbers, s.positions, info={"energy": s.energy}) for s in frames]
    for a, s in zip(atoms, frames):
        a.arrays["forces"] = s.forces
    ase.io.write(path, atoms, format="extxyz")
    return path


def test_test_file_in_other_units_is_caught(tmp_path, capsys, ethanol_structures):
    """data.energy_unit (kcal/mol) applies to every file; a test_file written in eV was read as
    kcal/mol and its errors of ~1e8 meV printed as results. Now it is checked with train + valid."""
    test = write_in_ev(tmp_path / "test_in_ev.xyz", ethanol_structures[95:])
    line = one_line_error(*run_train(tmp_path, capsys, data={"test_file": str(test)})[::2])
    assert re.search(r"5 structure\(s\) lie more than 10.0 eV/atom.*test_in_ev.xyz\[\d\].*Mixed energy units", line), line
    code, out, err = run_train(tmp_path, capsys, data={"test_file": str(ETHANOL), "energy_outlier_limit": None})
    assert code == 0 and "test " in out, err


# ---- gmnn-eval -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ethanol_model_file(tmp_path_factory):
    """A small untrained model whose energy shifts are fitted to rMD17 ethanol (in eV)."""
    from gmnn import build_model, export_model
    from gmnn.graph import build_graphs
    from gmnn.scale_shift import fit_scale_shift
    structures = read_structures(ETHANOL, energy_unit="kcal/mol", index="0:20")
    model = build_model(["H", "C", "O"], hidden=(8,), dtype="float64")
    fit_scale_shift(model, build_graphs(structures, model.atomic_numbers, model.cutoff))
    return export_model(model.eval(), tmp_path_factory.mktemp("eval") / "ethanol.pt")


def run_eval(capsys, *argv):
    from gmnn.cli import eval_main
    code = eval_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_of_kcal_per_mol_data_without_energy_unit_names_the_option(tmp_path, capsys, ethanol_model_file):
    """rMD17 is in kcal/mol; read as eV, the errors were printed as results (1e8 meV). The model's
    own predictions are thousands of eV/atom away from every reference: an error naming
    --energy-unit."""
    json_path = tmp_path / "e.json"
    line = one_line_error(*run_eval(capsys, ethanol_model_file, ETHANOL, "--index", "0:10", "--json", json_path)[::2])
    assert re.search(r"rmd17_ethanol_100.xyz: the model's energies differ from the reference by more than "
                     r"10.0 eV/atom for 10 of the 10 structures \(median [0-9.e+]+ eV/atom\).*--energy-unit", line), line
    assert not json_path.exists()
    code, out, err = run_eval(capsys, ethanol_model_file, ETHANOL, "--index", "0:10", "--energy-unit", "kcal/mol",
                              "--json", json_path)
    assert code == 0 and "rmd17_ethanol_100.xyz" in out, err


def test_eval_of_a_file_with_mixed_units_names_the_frames(tmp_path, capsys, ethanol_model_file, ethanol_structures):
    import ase.io
    p = tmp_path / "mixed.xyz"
    atoms = [Atoms(s.numbers, s.positions, info={"energy": s.energy * (1 / 0.0433641043 if k in (2, 7) else 1.0)})
             for k, s in enumerate(ethanol_structures[:20])]
    ase.io.write(p, atoms, format="extxyz")
    line = one_line_error(*run_eval(capsys, ethanol_model_file, p, "--json", tmp_path / "e.json")[::2])
    assert re.search(r"2 structure\(s\) lie more than 10.0 eV/atom .*mixed.xyz\[(2|7)\].*--energy-outlier-limit none", line), line
    code, out, err = run_eval(capsys, ethanol_model_file, p, "--energy-outlier-limit", "none", "--json", tmp_path / "e.json")
    assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    (["--energy-unit", "kcal"], r"unknown energy unit 'kcal'; known: eV"),
    (["--index", "5:5"], r"index '5:5' selects no structures"),
    (["--energy-outlier-limit", "-1"], r"--energy-outlier-limit must be a positive number of eV/atom or 'none'"),
])
def test_bad_eval_options_are_one_line_errors(tmp_path, capsys, ethanol_model_file, argv, message):
    line = one_line_error(*run_eval(capsys, ethanol_model_file, ETHANOL, "--energy-unit", "kcal/mol", *argv,
                                    "--json", tmp_path / "e.json")[::2])
    assert re.search(message, line), line


def test_eval_of_missing_files_is_one_line(tmp_path, capsys, ethanol_model_file):
    line = one_line_error(*run_eval(capsys, ethanol_model_file, tmp_path / "nope.xyz", "--json", tmp_path / "e.json")[::2])
    assert "nope.xyz: file not found" in line
    line = one_line_error(*run_eval(capsys, tmp_path / "nope.pt", ETHANOL, "--json", tmp_path / "e.json")[::2])
    assert "nope.pt" in line and "not found" in line


def test_eval_table_columns_never_run_together():
    """Numbers wider than a column (1.2e8 meV) used to touch their neighbours: "392865229.74792865229.815"."""
    from gmnn.evaluation import format_table
    metrics = {"energy_mae": 123456.789, "energy_rmse": 392865.22974, "energy_per_atom_mae": 10318.358861,
               "energy_per_atom_rmse": 10318.358868, "forces_mae": 17.01172, "forces_rmse": 23.89306}
    table = format_table({"a_rather_long_file_name.xyz": {"n_structures": 1234567, **metrics}, "b.xyz": {
        "n_structures": 3, **{k: float("nan") for k in metrics}}})
    head, units, first, second = table.splitlines()
    assert head.split() == ["set", "N", "E", "MAE", "E", "RMSE", "E/atom", "MAE", "E/atom", "RMSE", "F", "MAE", "F", "RMSE"]
    cells = first.split()
    assert cells[:2] == ["a_rather_long_file_name.xyz", "1234567"]
    np.testing.assert_allclose([float(c) for c in cells[2:]], [1000 * metrics[k] for k in metrics], rtol=1e-6)
    assert second.split()[1:] == ["3"] + ["nan"] * 6
    # right-aligned columns: header, units and every row end each column at the same character
    ends = lambda line: [m.end() for m in re.finditer(r"\S+", line)]
    assert ends(first)[1:] == ends(second)[1:] == [ends(head)[1]] + ends(head)[3::2]
    assert ends(units) == ends(first)[2:]


# ---- gmnn-sample ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--temperature", "-100", r"--temperature must be a positive number of K, got -100.0"),
    ("--temperature", "nan", r"--temperature must be a positive number of K, got nan"),
    ("--timestep", "0", r"--timestep must be a positive number of fs, got 0.0"),
    ("--friction", "-0.01", r"--friction must be a positive number of 1/fs, got -0.01"),
    ("--samples", "0", r"--samples must be >= 1, got 0"),
    ("--stride", "-5", r"--stride must be >= 1, got -5"),
    ("--equilibration", "-1", r"--equilibration must be >= 0, got -1"),
    ("--seed", "-1", r"--seed must be >= 0, got -1"),
])
def test_bad_sample_options_are_one_line_errors(tmp_path, capsys, option, value, message):
    from gmnn.cli import sample_main
    code = sample_main([str(ETHANOL), "-o", str(tmp_path / "out.xyz"), option, value])
    line = one_line_error(code, capsys.readouterr().err)
    assert re.search(message, line), line
    assert not (tmp_path / "out.xyz").exists()


def test_forces_without_any_energy_is_one_line(tmp_path, capsys):
    """Found by the config fuzz (tests/test_config_fuzz.py): `energy_key: none` with forces passed
    the label check and ended in a traceback from the energy-shift fit."""
    line = one_line_error(*run_train(tmp_path, capsys, data={"energy_key": "none"})[::2])
    assert "no training structure has an energy label" in line, line
