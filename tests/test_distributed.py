"""Data-parallel training: 2 CPU processes under torchrun (gloo) reach the same parameters as
one process with the combined batches."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gmnn.checkpoint import load_checkpoint
from gmnn_testing import write_ethanol_config

BIN = Path(sys.executable).parent


def write_config(path, out):
    return write_ethanol_config(path, out, epochs=2, dtype="float64", lr=0.01)


@pytest.mark.skipif(not (BIN / "torchrun").exists(), reason="torchrun not installed")
def test_two_processes_equal_one_process_with_the_combined_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = write_config(tmp_path / "single.yaml", tmp_path / "single")
    subprocess.run([str(BIN / "gmnn-train"), str(single), "--no-progress"], check=True, env=env,
                   capture_output=True, timeout=300)
    multi = write_config(tmp_path / "multi.yaml", tmp_path / "multi")
    proc = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
                           str(BIN / "gmnn-train"), str(multi), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = load_checkpoint(tmp_path / "single" / "last.ckpt")
    b = load_checkpoint(tmp_path / "multi" / "last.ckpt")
    assert a["epoch"] == b["epoch"] == 2
    changed = 0
    for key, value in a["model"]["state_dict"].items():
        other = b["model"]["state_dict"][key]
        assert torch.allclose(value, other, rtol=1e-9, atol=1e-11), (key, (value - other).abs().max())
    # and training did move the weights away from the (seeded) initial model
    from gmnn.config import load_config
    from gmnn.training import Trainer
    initial = Trainer(load_config(single), show_progress=False).model.state_dict()
    moved = (a["model"]["state_dict"]["network.layers.0.weight"] - initial["network.layers.0.weight"]).abs().max()
    assert moved > 1e-3, moved
    rows = lambda run: (tmp_path / run / "metrics.csv").read_text().splitlines()[1:]
    for ra, rb in zip(rows("single"), rows("multi")):
        assert float(ra.split(",")[2]) == pytest.approx(float(rb.split(",")[2]), rel=1e-9, nan_ok=True)  # train loss (NaN at epoch 0)
