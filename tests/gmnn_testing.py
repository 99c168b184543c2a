"""Shared helpers of the test-suite (imported by name; conftest.py only holds fixtures)."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ETHANOL = DATA / "rmd17_ethanol_100.xyz"
CARBON = DATA / "carbon_gap_100.xyz"
QM9 = DATA / "qm9_100.xyz"
ANI = DATA / "ani1x_ccx_5mol.h5"


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
