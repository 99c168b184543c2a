"""The command-line tools end to end, as a user runs them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gmnn_testing import ETHANOL, write_ethanol_config

BIN = Path(sys.executable).parent


def run(*args, cwd, ok=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    write_ethanol_config(tmp / "train.yaml", "run", epochs=3)
    proc = run("gmnn-train", "train.yaml", "--no-progress", cwd=tmp)
    assert "valid" in proc.stdout and "F MAE" in proc.stdout
    return tmp


def test_train_writes_checkpoints_metrics_and_summary(trained):
    run_dir = trained / "run"
    for name in ("best.ckpt", "last.ckpt", "metrics.csv", "final_metrics.json", "config.json"):
        assert (run_dir / name).exists(), name
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert final["valid"]["n_structures"] == 10 and final["train"]["n_structures"] == 40


def test_resume_after_completion_adds_no_epochs(trained):
    run("gmnn-train", "train.yaml", "--resume", "--no-progress", cwd=trained)
    assert len((trained / "run" / "metrics.csv").read_text().strip().splitlines()) == 1 + 1 + 3  # header, epoch 0, epochs 1-3


def test_eval_table_json_and_plot(trained):
    proc = run("gmnn-eval", "run/best.ckpt", ETHANOL, "--energy-unit", "kcal/mol", "--index", "90:",
               "--json", "eval.json", "--plot", "parity", cwd=trained)
    assert "meV/atom" in proc.stdout
    metrics = json.loads((trained / "eval.json").read_text())[ETHANOL.name]
    final = json.loads((trained / "run" / "final_metrics.json").read_text())["valid"]
    assert metrics["forces_mae"] == pytest.approx(final["forces_mae"], rel=1e-6)
    png = trained / f"parity_{ETHANOL.stem}.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_export_then_eval_of_the_exported_file(trained):
    proc = run("gmnn-export", "run/best.ckpt", "-o", "model.pt", "--dtype", "float64", cwd=trained)
    assert "pair_coeff * * model.pt H C O" in proc.stdout
    run("gmnn-eval", "model.pt", ETHANOL, "--energy-unit", "kcal/mol", "--index", "90:", "--json", "e.json", cwd=trained)
    a = json.loads((trained / "e.json").read_text())[ETHANOL.name]
    b = json.loads((trained / "run" / "final_metrics.json").read_text())["valid"]
    assert a["energy_mae"] == pytest.approx(b["energy_mae"], abs=1e-5)


def test_user_errors_are_one_line_with_exit_status_2(trained):
    (trained / "bad.yaml").write_text("data:\n  train_file: x.xyz\ntraining:\n  epoch: 3\n")
    proc = run("gmnn-train", "bad.yaml", cwd=trained, ok=False)
    assert proc.returncode == 2
    assert "unknown config key 'training.epoch'; did you mean 'epochs'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("gmnn-eval", "nothing.ckpt", ETHANOL, cwd=trained, ok=False)
    assert proc.returncode == 2 and "not found" in proc.stderr
