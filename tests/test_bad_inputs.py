"""Rows of docs/reliability.md not covered elsewhere: large, empty and corrupt inputs, labels
that do not fit the config, and a full disk. Each case gives a named error or a defined result."""
import errno
import itertools
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from gmnn.calculator import GMNNCalculator
from gmnn.config import config_from_dict
from gmnn.data import DataError, read_structures
from gmnn.neighbors import neighbor_list
from gmnn.training import Trainer, load_data
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

@pytest.mark.parametrize("atoms", [molecule("CH3CH2OH"), bulk("C", "diamond", a=3.57, cubic=True) * (2, 2, 2)],
                         ids=["molecule", "periodic"])
def test_calculator_atom_blocks_do_not_change_results(atoms):
    """Evaluating 5 atoms per pass (neighbours outside the block renumbered as ghosts) gives
    the one-pass energies, forces and stress."""
    atoms = atoms.copy()
    atoms.rattle(0.05, seed=3)
    model = small_model()
    results = []
    for per_pass in (5, 100000):
        atoms.calc = GMNNCalculator(model, atoms_per_pass=per_pass)
        props = [atoms.get_potential_energies(), atoms.get_forces()]
        if atoms.pbc.all():
            props.append(atoms.get_stress())
        results.append(props)
    for blocked, whole in zip(*results):
        np.testing.assert_allclose(blocked, whole, rtol=1e-11, atol=1e-12)
    with pytest.raises(ValueError, match="atoms_per_pass"):
        GMNNCalculator(model, atoms_per_pass=0)


def test_structure_of_a_hundred_thousand_atoms():
    """10^5 atoms through the ASE calculator in bounded memory (blocks of 4096): a perfect
    diamond crystal has the same energy per atom as its 8-atom cell and zero forces."""
    model = small_model(elements=("C",), cutoff=2.0, hidden=(8,))  # 4 neighbours: the test is about size
    cell = bulk("C", "diamond", a=3.57, cubic=True)
    cell.calc = GMNNCalculator(model)
    per_atom = cell.get_potential_energy() / len(cell)
    big = cell * (23, 23, 24)
    assert len(big) == 101568
    big.calc = GMNNCalculator(model)
    assert big.get_potential_energy() / len(big) == pytest.approx(per_atom, rel=1e-12)
    assert np.abs(big.get_forces()).max() < 1e-10
    np.testing.assert_allclose(big.get_potential_energies(), per_atom, rtol=1e-12)


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
    with caplog.at_level(logging.WARNING, logger="gmnn.training"):
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
