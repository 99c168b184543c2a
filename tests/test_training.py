"""Training: it learns (beats the energy-shift baseline), checkpoints, resumes exactly."""
import csv

import numpy as np
import pytest
import torch

from gmnn.checkpoint import load_checkpoint
from gmnn.config import ConfigError, config_from_dict
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.scale_shift import fit_scale_shift
from gmnn.dataset import load_data
from gmnn.model import param_groups
from gmnn.training import Trainer
from gmnn_testing import ETHANOL


def ethanol_config(tmp_path, **training):
    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "data": {"train_file": str(ETHANOL), "train_index": "0:60", "valid_file": str(ETHANOL),
                 "valid_index": "80:", "energy_unit": "kcal/mol"},
        "model": {"hidden": [64, 64], "dtype": "float32"},
        "training": {"epochs": 40, "batch_size": 10, "lr": 0.01, "force_weight": 4.0, **training},
    })


def test_training_beats_the_energy_shift_baseline(tmp_path):
    config = ethanol_config(tmp_path)
    data = load_data(config)
    trainer = Trainer(config, data=data, show_progress=False)
    baseline_model = trainer.model
    # baseline: the same model with its network switched off = least-squares energy shifts only
    import copy
    base = copy.deepcopy(baseline_model)
    with torch.no_grad():
        base.scale_shift.scale.zero_()
    baseline = error_metrics(predict_graphs(base, data.valid))
    result = trainer.run()
    valid = result["valid"]
    print(f"valid E MAE {valid['energy_mae']:.4f} eV (baseline {baseline['energy_mae']:.4f}), "
          f"F MAE {valid['forces_mae']:.4f} eV/A (baseline {baseline['forces_mae']:.4f})")
    assert valid["energy_mae"] < 0.6 * baseline["energy_mae"]
    assert valid["forces_mae"] < 0.5 * baseline["forces_mae"]
    out = tmp_path / "run"
    assert (out / "best.ckpt").exists() and (out / "last.ckpt").exists()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(0, 41))  # epoch 0: the starting model
    assert float(rows[-1]["lr"]) == pytest.approx(0.01 * 0.01, rel=1e-6)  # linear decay to 1 %


def test_resume_continues_exactly_where_an_interrupted_run_stopped(tmp_path, monkeypatch):
    full = ethanol_config(tmp_path / "full", epochs=4)
    Trainer(full, show_progress=False).run()

    cut = ethanol_config(tmp_path / "cut", epochs=4)
    original_validate = Trainer.validate
    calls = {"n": 0}

    def validate_then_interrupt(self):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C during epoch 3 (calls: start model, epochs 1, 2, 3)
            raise KeyboardInterrupt
        return original_validate(self)
    monkeypatch.setattr(Trainer, "validate", validate_then_interrupt)
    with pytest.raises(SystemExit):
        Trainer(cut, show_progress=False).run()
    assert load_checkpoint(tmp_path / "cut" / "run" / "last.ckpt")["epoch"] == 2
    monkeypatch.setattr(Trainer, "validate", original_validate)
    resumed = Trainer(cut, show_progress=False)
    resumed.resume()
    resumed.run()

    read = lambda p: list(csv.DictReader(open(p / "run" / "metrics.csv")))
    a, b = read(tmp_path / "full"), read(tmp_path / "cut")
    assert len(a) == len(b) == 5  # epochs 0 (the starting model) to 4
    for ra, rb in zip(a, b):
        for key in ("train_loss", "valid_loss", "valid_forces_mae", "lr"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-6, nan_ok=True), (ra["epoch"], key)
    sa = load_checkpoint(tmp_path / "full" / "run" / "last.ckpt")["model"]["state_dict"]
    sb = load_checkpoint(tmp_path / "cut" / "run" / "last.ckpt")["model"]["state_dict"]
    for key in sa:
        assert torch.allclose(sa[key], sb[key], atol=1e-6), key


def test_energy_only_training_runs_with_zero_force_weight(tmp_path):
    config = ethanol_config(tmp_path, epochs=3, force_weight=0.0)
    result = Trainer(config, show_progress=False).run()
    assert np.isfinite(result["valid"]["energy_mae"])


def test_scale_shift_fit_removes_the_mean_energy(tmp_path):
    config = ethanol_config(tmp_path)
    data = load_data(config)
    from gmnn import build_model
    model = build_model(["H", "C", "O"], hidden=(16, 16), dtype="float64")
    fit_scale_shift(model, data.train)
    with torch.no_grad():
        model.scale_shift.scale.zero_()
    preds = predict_graphs(model, data.train)
    assert abs(np.mean(preds.energy - preds.energy_ref)) < 1e-8
    force_rms = np.sqrt(np.mean(np.concatenate([g.forces.numpy().ravel() for g in data.train]) ** 2))
    fit_scale_shift(model, data.train)
    assert float(model.scale_shift.scale[0]) == pytest.approx(force_rms)


def test_param_groups_layer_wise_learning_rates_and_freezing():
    from gmnn import build_model
    model = build_model(["H", "C"], hidden=(8, 8))
    groups = param_groups(model, 1e-2, layer_lr_factor=2.6, freeze=["dense0"])
    by_name = {g["name"]: g["lr"] for g in groups}
    assert by_name == pytest.approx({"descriptor": 1e-2 / 2.6**3, "dense1": 1e-2 / 2.6, "dense2": 1e-2})
    assert not model.network.linear_layers()[0].weight.requires_grad


@pytest.mark.parametrize("bad, message", [
    ({"training": {"lr_finl_factor": 0.1}}, "did you mean 'lr_final_factor'"),
    ({"training": {"lr": -0.1}}, "lr must be positive"),
    ({"training": {"epochs": "many"}}, "expected int"),
    ({"modle": {}}, "did you mean 'model'"),
])
def test_config_errors_name_the_key(bad, message):
    values = {"data": {"train_file": "x.xyz"}, **bad}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_unwritable_output_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = ethanol_config(tmp_path, epochs=1)
    config.output_dir = str(blocker / "run")
    with pytest.raises(OSError, match="not writable"):
        Trainer(config, show_progress=False).run()


def test_nan_loss_rolls_back_and_lowers_the_learning_rate(tmp_path, monkeypatch):
    """A NaN in epoch 3 restores the state after epoch 2 and halves the learning rate; the
    model never contains NaN and training finishes."""
    import gmnn.training as training
    config = ethanol_config(tmp_path, epochs=4)
    trainer = Trainer(config, show_progress=False)
    real_loss = training.loss_terms
    calls = {"n": 0}
    steps_per_epoch = 6  # 60 structures, batches of 10

    def poisoned(*args):
        calls["n"] += 1
        loss = real_loss(*args)
        return loss * float("nan") if calls["n"] == 2 * steps_per_epoch + 3 else loss
    monkeypatch.setattr(training, "loss_terms", poisoned)
    trainer.run()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    lr2, lr3 = float(rows[2]["lr"]), float(rows[3]["lr"])
    expected_lr3 = 0.01 * (1 - 0.99 * 18 / 24) * 0.5  # linear decay at step 18 of 24, halved
    assert lr3 == pytest.approx(expected_lr3, rel=1e-6), (lr2, lr3)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_persistent_nan_stops_with_a_clear_error(tmp_path, monkeypatch):
    import gmnn.training as training
    config = ethanol_config(tmp_path, epochs=2)
    monkeypatch.setattr(training, "loss_terms", lambda *a: torch.tensor(float("nan"), dtype=torch.float64))
    with pytest.raises(training.NonFiniteLoss, match="still non-finite after 5 rollbacks"):
        Trainer(config, show_progress=False).run()
