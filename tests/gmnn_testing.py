"""Shared helpers of the test-suite (imported by name; conftest.py only holds fixtures)."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ETHANOL = DATA / "rmd17_ethanol_100.xyz"
CARBON = DATA / "carbon_gap_100.xyz"
QM9 = DATA / "qm9_100.xyz"
ANI = DATA / "ani1x_ccx_5mol.h5"
# a model file of format 1 (float32, C H O, r_c 5 Å): the fine-tuned ethanol model shipped with
# the transfer-learning example
FORMAT_1_MODEL = ROOT / "examples" / "transfer_learning" / "models" / "ethanol_ccsdt_energy_n50.pt"


def small_model(elements=("H", "C", "O"), seed=0, dtype="float64", hidden=(32, 32), **kw):
    """A small untrained model with non-trivial scale/shift (so tests see every term)."""
    from gmnn import build_model
    torch.manual_seed(seed)
    model = build_model(list(elements), hidden=hidden, dtype=dtype, **kw)
    with torch.no_grad():
        model.scale_shift.scale.fill_(0.7)
        model.scale_shift.shift.copy_(torch.linspace(-3.0, -1.0, len(elements)))
    return model.eval()


def write_ethanol_config(path, output_dir, epochs, dtype="float32", lr=None):
    """A YAML config for a tiny model on rMD17 ethanol frames 0-39 (validation 90-99), as a
    user writes it for gmnn-train."""
    path.write_text(f"""
output_dir: {output_dir}
data:
  train_file: {ETHANOL}
  train_index: "0:40"
  valid_file: {ETHANOL}
  valid_index: "90:"
  energy_unit: kcal/mol
model:
  hidden: [16, 16]
  dtype: {dtype}
training:
  epochs: {epochs}
  batch_size: 8
  threads: 1
""" + (f"  lr: {lr}\n" if lr is not None else ""))
    return path


# A carbon energy shift that float32 does not hold exactly (it rounds it by 3.5e-5 eV, 3.4e-8
# relative): the model-dtype shift made a 10^5-atom float32 energy 3.5 eV off.
CARBON_SHIFT = -1029.4567


def cheap_carbon_model(dtype="float64"):
    """A carbon model whose 10^5-atom energy costs ~2 s (cutoff 2 Å: 4 neighbours, 1 radial
    channel, 8 features): for tests about size, not accuracy; shift CARBON_SHIFT."""
    model = small_model(elements=("C",), dtype=dtype, cutoff=2.0, hidden=(8,), n_radial=1, n_basis=3)
    with torch.no_grad():
        model.scale_shift.scale.fill_(3.0)
        model.scale_shift.shift.fill_(CARBON_SHIFT)
    return model


def hundred_thousand_carbon_atoms(seed=0):
    """Diamond, 23 x 23 x 24 cubic cells (101568 atoms), rattled by 0.05 Å."""
    import numpy as np
    from ase.build import bulk
    atoms = bulk("C", "diamond", a=3.57, cubic=True) * (23, 23, 24)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05, size=atoms.positions.shape)
    return atoms
