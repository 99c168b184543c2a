"""Shared helpers of the test-suite (imported by name; conftest.py only holds fixtures)."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ETHANOL = SHARED_DATA / "rmd17_ethanol_100.xyz"
CARBON = SHARED_DATA / "carbon_gap_100.xyz"
QM9 = SHARED_DATA / "qm9_100.xyz"
ANI = SHARED_DATA / "ani1x_ccx_5mol.h5"


def small_model(elements=("H", "C", "O"), seed=0, dtype="float64", hidden=(32, 32), **kw):
    """A small untrained model with non-trivial scale/shift (so tests see every term)."""
    from gmnn import build_model
    torch.manual_seed(seed)
    model = build_model(list(elements), hidden=hidden, dtype=dtype, **kw)
    with torch.no_grad():
        model.scale_shift.scale.fill_(0.7)
        model.scale_shift.shift.copy_(torch.linspace(-3.0, -1.0, len(elements)))
    return model.eval()
