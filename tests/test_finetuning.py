"""Transfer learning: layer-wise learning rates, freezing, shift re-fitting, and fine-tuning
from a pre-trained model vs training from scratch on real labels at another level of theory
(HF/STO-3G computed here with PySCF on shipped rMD17 geometries; pre-training on the shipped
PBE/def2-SVP labels)."""
import copy

import numpy as np
import pytest
import torch

from gmnn.checkpoint import save_checkpoint
from gmnn.config import config_from_dict
from gmnn.data import DataError, read_structures
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.finetuning import extend_elements, finetuner, prepare, zero_shot
from gmnn.dataset import load_data
from gmnn.training import Trainer
from gmnn_testing import ETHANOL, QM9

pytest.importorskip("pyscf")


@pytest.fixture(scope="module")
def hf_labels(tmp_path_factory):
    """HF/STO-3G energies and forces of rMD17 frames 80-99 (real labels, ~5 s)."""
    from gmnn.labelling import Level, label_structures
    out = tmp_path_factory.mktemp("hf") / "ethanol_hf_sto3g.xyz"
    atoms = [s.to_atoms() for s in read_structures(ETHANOL, energy_unit="kcal/mol")]
    label_structures(atoms, out, Level.parse("hf/sto-3g"), forces=True, indices=range(80, 100), progress=False)
    return out


def finetune_config(tmp_path, labels, **training):
    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "data": {"train_file": str(labels), "train_index": "0:8", "valid_file": str(labels), "valid_index": "8:"},
        "model": {"hidden": [64, 64], "dtype": "float64"},
        "training": {"epochs": 60, "batch_size": 4, "lr": 0.005, "threads": 1, **training},
        "finetune": {"layer_lr_factor": 2.6},
    })


def test_layer_learning_rates_follow_the_config(tmp_path, hf_labels, trained_ethanol_model):
    config = finetune_config(tmp_path, hf_labels, lr=0.01)
    config.finetune.layer_lr_factor = 3.0
    config.finetune.freeze = ["dense0"]
    trainer = finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False)
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == pytest.approx({"descriptor": 0.01 / 27, "dense1": 0.01 / 3, "dense2": 0.01})


def test_frozen_layers_do_not_change(tmp_path, hf_labels, trained_ethanol_model):
    config = finetune_config(tmp_path, hf_labels, epochs=3)
    config.finetune.freeze = ["descriptor", "dense0"]
    trainer = finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    assert torch.equal(before["descriptor.radial.pair_coefficients"], after["descriptor.radial.pair_coefficients"])
    assert torch.equal(before["network.layers.0.weight"], after["network.layers.0.weight"])
    assert not torch.equal(before["network.layers.2.weight"], after["network.layers.2.weight"])
    assert not torch.equal(before["network.layers.4.weight"], after["network.layers.4.weight"])


def test_shift_refit_removes_the_offset_between_levels_of_theory(tmp_path, hf_labels, trained_ethanol_model):
    config = finetune_config(tmp_path, hf_labels)
    _, data = prepare(config, trained_ethanol_model)
    raw = error_metrics(predict_graphs(trained_ethanol_model, data.valid))
    refit = error_metrics(predict_graphs(zero_shot(trained_ethanol_model, data), data.valid))
    print(f"PBE model on HF labels: E MAE {raw['energy_mae']:.2f} eV, after shift re-fit {refit['energy_mae']:.4f} eV")
    assert raw["energy_mae"] > 10.0           # HF/STO-3G and PBE/def2-SVP differ by ~70 eV
    assert refit["energy_mae"] < 0.2          # a per-molecule offset is all that differed, largely
    assert refit["energy_mae"] < raw["energy_mae"] / 100
    # the re-fitted shifts remove the mean offset on the data they were fitted to
    zs = zero_shot(trained_ethanol_model, data)
    p = predict_graphs(zs, data.train, forces=False)
    assert abs(np.mean(p.energy - p.energy_ref)) < 1e-8


def test_finetuning_beats_scratch_and_zero_shot(tmp_path, hf_labels, trained_ethanol_model):
    """8 HF/STO-3G structures: fine-tuning the PBE-pre-trained model vs the same model class
    trained from scratch on the same 8, judged on the other 12."""
    config = finetune_config(tmp_path / "ft", hf_labels)
    ft = finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False).run()["valid"]
    scratch_config = finetune_config(tmp_path / "scratch", hf_labels, lr=0.01)
    scratch = Trainer(scratch_config, show_progress=False).run()["valid"]
    data = load_data(config, trained_ethanol_model.atomic_numbers)
    zs = error_metrics(predict_graphs(zero_shot(trained_ethanol_model, data), data.valid))
    print(f"\nE MAE meV: finetune {1000 * ft['energy_mae']:.1f}, scratch {1000 * scratch['energy_mae']:.1f}, "
          f"zero-shot {1000 * zs['energy_mae']:.1f}; F MAE meV/A: finetune {1000 * ft['forces_mae']:.0f}, "
          f"scratch {1000 * scratch['forces_mae']:.0f}, zero-shot {1000 * zs['forces_mae']:.0f}")
    assert ft["forces_mae"] < scratch["forces_mae"]
    assert ft["energy_mae"] < scratch["energy_mae"]
    assert ft["energy_mae"] < zs["energy_mae"]
    assert ft["forces_mae"] < zs["forces_mae"]


def test_unknown_elements_need_add_elements(tmp_path, trained_ethanol_model):
    config = config_from_dict({"output_dir": str(tmp_path / "r"),
                               "data": {"train_file": str(QM9), "energy_key": "U0", "energy_unit": "Hartree",
                                        "train_index": "0:20", "n_valid": 5},
                               "training": {"epochs": 1}})
    with pytest.raises(DataError, match="--add-elements"):
        prepare(config, trained_ethanol_model)
    model, data = prepare(config, trained_ethanol_model, add_elements=True)
    assert {"H", "C", "N", "O"} <= set(model.symbols)
    assert model.atomic_numbers == sorted(model.atomic_numbers)
    # the known element pairs and the network are those of the pre-trained model
    old, new = trained_ethanol_model, model
    idx = [new.atomic_numbers.index(z) for z in old.atomic_numbers]
    got = new.descriptor.radial.pair_coefficients[idx][:, idx]
    assert torch.equal(got, old.descriptor.radial.pair_coefficients)
    assert torch.equal(new.network.layers[0].weight, old.network.layers[0].weight)


def test_finetuning_never_returns_worse_than_its_start_on_validation(tmp_path, hf_labels, trained_ethanol_model):
    """With a learning rate that wrecks the model, best.ckpt is the starting (zero-shot) model."""
    from gmnn.checkpoint import load_checkpoint
    config = finetune_config(tmp_path, hf_labels, epochs=3, lr=50.0)
    trainer = finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False)
    start = copy.deepcopy(trainer.model.state_dict())
    trainer.run()
    best = load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert best["best_epoch"] == 0
    for key, value in start.items():
        if not key.startswith("uncertainty."):  # calibrated on the new labels, the weights untouched
            assert torch.equal(best["model"]["state_dict"][key], value), key


def test_anchor_weight_keeps_the_parameters_near_the_pretrained_ones(tmp_path, hf_labels, trained_ethanol_model):
    """L2-SP: with finetune.anchor_weight the same fine-tune moves the weights less (mean squared
    change at least 3x smaller for a strong anchor), and the anchor term is exactly
    w * sum (theta - theta_0)^2 over descriptor and network parameters."""
    from gmnn.finetuning import anchor_to
    moved = {}
    for weight in (0.0, 10.0):
        config = finetune_config(tmp_path / f"w{weight}", hf_labels, epochs=4)
        config.finetune.anchor_weight = weight
        trainer = finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False)
        start = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if not k.startswith("scale_shift")}
        trainer.run()
        now = {k: v.detach() for k, v in trainer.model.named_parameters()}
        moved[weight] = float(sum(((now[k] - v) ** 2).sum() for k, v in start.items()) / sum(v.numel() for v in start.values()))
        if weight:
            penalty = anchor_to(copy.deepcopy(trainer.model), weight)
            assert float(penalty(trainer.model).detach()) == 0.0
            with torch.no_grad():
                trainer.model.network.layers[0].bias.add_(0.5)
            assert float(penalty(trainer.model).detach()) == pytest.approx(weight * 0.25 * 64, rel=1e-6)
    assert 0 < moved[10.0] < moved[0.0] / 3, moved
    config = finetune_config(tmp_path / "neg", hf_labels, epochs=1)
    config.finetune.anchor_weight = -1.0
    with pytest.raises(Exception, match="anchor_weight must be >= 0"):
        finetuner(config, copy.deepcopy(trained_ethanol_model), show_progress=False)


# ---- the pre-trained model's architecture wins; configs that contradict it are errors ----------

def pretrained_checkpoint(tmp_path, cutoff=3.0):
    """A checkpoint of a 3 A model (not the 5 A config default; ethanol spans ~3.8 A), as
    gmnn-train writes it."""
    from gmnn.model import build_model
    model = build_model(["H", "C", "O"], cutoff=cutoff, hidden=(16, 8), dtype="float64")
    path = tmp_path / "pretrained.ckpt"
    save_checkpoint(path, {"model": model.checkpoint_state()})
    return model, path


def test_finetuning_uses_the_checkpoints_cutoff_and_records_the_true_model(tmp_path, hf_labels):
    import json
    from gmnn.finetuning import finetune
    model, path = pretrained_checkpoint(tmp_path)
    config = config_from_dict({"output_dir": str(tmp_path / "run"),
                               "data": {"train_file": str(hf_labels), "train_index": "0:6",
                                        "valid_file": str(hf_labels), "valid_index": "6:8"},
                               "training": {"epochs": 1, "batch_size": 3, "threads": 1, "force_weight": 0}})
    trainer = finetuner(config, copy.deepcopy(model), show_progress=False)
    longest = max(float(g.edge_vectors.norm(dim=1).max()) for g in trainer.data.train)
    assert 2.5 < longest < 3.0  # edges end at the model's 3 A, not at the config default of 5 A
    finetune(config, path, show_progress=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert recorded["cutoff"] == 3.0 and recorded["hidden"] == [16, 8] and recorded["dtype"] == "float64"


@pytest.mark.parametrize("model_section, message", [
    ({"cutoff": 5.0}, r"model.cutoff: 5.0 in the config, 3.0 in the model"),
    ({"hidden": [512, 512]}, r"model.hidden: \[512, 512\] in the config, \[16, 8\] in the model"),
])
def test_a_config_that_contradicts_the_checkpoint_is_an_error(tmp_path, hf_labels, model_section, message):
    from gmnn.config import ConfigError
    model, _ = pretrained_checkpoint(tmp_path)
    config = config_from_dict({"output_dir": str(tmp_path / "run"), "model": model_section,
                               "data": {"train_file": str(hf_labels), "n_valid": 2},
                               "training": {"epochs": 1, "force_weight": 0}})
    with pytest.raises(ConfigError, match=message):
        finetuner(config, model, show_progress=False)


@pytest.mark.parametrize("freeze, message", [
    (["dense7"], r"unknown layer\(s\) 'dense7'; the layers are descriptor, dense0, dense1, dense2"),
    (["descriptor", "dense0", "dense1", "dense2"], "every layer.*--zero-shot"),
])
def test_bad_freeze_lists_are_one_line_errors(tmp_path, hf_labels, freeze, message):
    from gmnn.config import ConfigError
    model, _ = pretrained_checkpoint(tmp_path)
    config = config_from_dict({"output_dir": str(tmp_path / "run"), "finetune": {"freeze": freeze},
                               "data": {"train_file": str(hf_labels), "n_valid": 2},
                               "training": {"epochs": 1, "force_weight": 0}})
    with pytest.raises(ConfigError, match=message):
        finetuner(config, model, show_progress=False)


def test_gmnn_train_refuses_a_finetune_section(tmp_path, hf_labels):
    from gmnn.config import ConfigError
    from gmnn.training import train
    config = config_from_dict({"output_dir": str(tmp_path / "run"), "finetune": {"layer_lr_factor": 2.6},
                               "data": {"train_file": str(hf_labels), "n_valid": 2}, "training": {"epochs": 1}})
    with pytest.raises(ConfigError, match="gmnn-finetune"):
        train(config, show_progress=False)


def test_energy_only_validation_computes_no_forces(tmp_path, hf_labels, monkeypatch):
    import gmnn.training as training
    calls = []
    real = training.predict_graphs
    monkeypatch.setattr(training, "predict_graphs", lambda *a, **k: calls.append(k.get("forces")) or real(*a, **k))
    model, _ = pretrained_checkpoint(tmp_path)
    config = finetune_config(tmp_path, hf_labels, epochs=1, force_weight=0)
    config.model.hidden, config.model.dtype = None, None
    trainer = finetuner(config, model, show_progress=False)
    metrics = trainer.validate()
    assert calls == [False] and np.isnan(metrics["forces_mae"]) and np.isfinite(metrics["energy_mae"])


# ---- choosing the fine-tuned model by k-fold cross-validation (finetune.selection: cv) ---------

def test_folds_partition_the_structures_evenly():
    from gmnn.selection import fold_indices
    folds = fold_indices(23, 5, seed=3)
    together = np.sort(np.concatenate(folds))
    assert np.array_equal(together, np.arange(23))
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    with pytest.raises(ValueError, match="folds"):
        fold_indices(3, 5)


def cv_config(tmp_path, labels, **finetune):
    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "data": {"train_file": str(labels), "train_index": "0:10", "valid_file": str(labels), "valid_index": "10:"},
        "training": {"epochs": 6, "threads": 1, "force_weight": 0},
        "finetune": {"folds": 3, **finetune},
    })


def save_pretrained(tmp_path, model):
    path = tmp_path / "pretrained.ckpt"
    save_checkpoint(path, {"model": model.checkpoint_state()})
    return path


def test_cv_selection_keeps_the_soup_of_the_folds_after_the_last_epoch(tmp_path, hf_labels, trained_ethanol_model):
    """All 20 structures (train + valid) are pooled and split into 3 folds; fine-tuning lowers
    the loss pooled over the held-out folds, so the last epoch is kept, and best.ckpt is the
    mean of the 3 fold models' weights there (checked by re-running the folds), shifts re-fitted
    on all 20; metrics.csv has one row per epoch from 0 with the pooled held-out errors."""
    import csv
    import json
    from gmnn.checkpoint import load_model
    from gmnn.finetuning import finetune, finetuner
    from gmnn.scale_shift import fit_scale_shift
    from gmnn.selection import cross_validate, mean_weights
    config = cv_config(tmp_path, hf_labels)
    config.training.force_weight = 4.0  # with HF forces, 6 epochs surely help
    results = finetune(config, save_pretrained(tmp_path, trained_ethanol_model), show_progress=False)
    saved = json.loads((tmp_path / "run" / "cross_validation.json").read_text())
    losses, sizes = np.array(saved["losses"]), np.array(saved["fold_sizes"])
    assert losses.shape == (3, 7) and sizes.sum() == 20
    pooled = (losses * sizes[:, None]).sum(axis=0) / sizes.sum()
    chosen = results["selection"]["epoch"]
    assert pooled[-1] < pooled[0] and chosen == 6 and results["best_epoch"] == chosen
    assert results["train"]["n_structures"] == 20
    assert results["selection"]["cv_loss"] <= results["selection"]["zero_shot_cv_loss"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(7))
    assert [float(r["valid_loss"]) for r in rows] == pytest.approx(pooled, rel=1e-9)
    # the soup, rebuilt independently: the fold models stopped at the chosen epoch, averaged
    data = load_data(cv_config(tmp_path, hf_labels), trained_ethanol_model.atomic_numbers)
    pool = data.train + data.valid
    again = cv_config(tmp_path / "again", hf_labels)
    again.training.force_weight = 4.0
    from gmnn.finetuning import check_config
    check_config(again, trained_ethanol_model)
    models = []
    make = lambda tr, va: finetuner(copy.deepcopy(again), copy.deepcopy(trained_ethanol_model), show_progress=False,
                                    data=type(data)(tr, va, [], data.elements))
    cross_validate(pool, make, 3, chosen, seed=0,
                   on_epoch=lambda e, trainers, m, l: e == chosen and models.extend(t.model for t in trainers))
    expected = copy.deepcopy(trained_ethanol_model)
    expected.load_state_dict(mean_weights(models))
    fit_scale_shift(expected, pool, scale=False)
    best = load_model(tmp_path / "run" / "best.ckpt")
    weights = lambda model: {k: v for k, v in model.state_dict().items() if not k.startswith("uncertainty.")}
    for key, value in weights(expected).items():
        assert torch.allclose(best.state_dict()[key], value, rtol=1e-12, atol=1e-12), key
    # the fold models are saved (an ensemble), and the soup's uncertainty is calibrated on their held-out folds
    folds = [load_model(tmp_path / "run" / "folds" / f"fold{k}.ckpt") for k in range(3)]
    for fold, model in zip(folds, models):
        for key, value in weights(model).items():
            assert torch.allclose(fold.state_dict()[key], value, rtol=1e-12, atol=1e-12), key
    assert best.has_uncertainty and results["uncertainty"]["n_held_out"] == 20


def test_cv_selection_returns_the_zero_shot_model_when_training_only_hurts(tmp_path, hf_labels, trained_ethanol_model):
    """When the pre-trained model already explains the new energies up to a constant, any
    training can only hurt: epoch 0 wins, and best.ckpt is the pre-trained model with shifts
    re-fitted on all 20 structures, i.e. what --zero-shot writes."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from gmnn.checkpoint import load_model
    from gmnn.finetuning import finetune
    # the model's own energies, 70 eV lower: a new "level" that zero-shot explains exactly
    frames = ase.io.read(hf_labels, ":")
    graphs = load_data(cv_config(tmp_path, hf_labels), trained_ethanol_model.atomic_numbers)
    own = predict_graphs(trained_ethanol_model, graphs.train + graphs.valid, forces=False).energy
    for atoms, energy in zip(frames, own):
        atoms.calc = SinglePointCalculator(atoms, energy=energy - 70.0)
    ase.io.write(tmp_path / "own.xyz", frames)
    pretrained = save_pretrained(tmp_path, trained_ethanol_model)
    config = cv_config(tmp_path / "wreck", tmp_path / "own.xyz")
    config.training.lr = 0.05
    results = finetune(config, pretrained, show_progress=False)
    assert results["selection"]["winner"] == "zero-shot" and results["best_epoch"] == 0
    assert results["train"]["energy_mae"] < 1e-6  # the soup of unchanged networks, shifts re-fitted
    finetune(cv_config(tmp_path / "zs", tmp_path / "own.xyz"), pretrained, show_progress=False, zero_shot_only=True)
    picked, baseline = load_model(tmp_path / "wreck" / "run" / "best.ckpt"), load_model(tmp_path / "zs" / "run" / "best.ckpt")
    for key, value in baseline.state_dict().items():
        if not key.startswith("uncertainty."):  # calibrated on held-out folds vs on all 20
            assert torch.allclose(picked.state_dict()[key], value, rtol=0, atol=1e-12), key
    # energy labels only, and a pre-trained model without an uncertainty to take the force scale
    # from: no uncertainty rather than a wrong one, and final_metrics.json says why
    assert not picked.has_uncertainty and not baseline.has_uncertainty
    assert results["uncertainty"]["calibrated"] is False and "force" in results["uncertainty"]["reason"]
    data = load_data(cv_config(tmp_path, tmp_path / "own.xyz"), trained_ethanol_model.atomic_numbers)
    everything = type(data)(data.train + data.valid, [], [], data.elements)
    expected = zero_shot(trained_ethanol_model, everything)
    assert torch.allclose(baseline.scale_shift.shift, expected.scale_shift.shift, rtol=0, atol=1e-10)


def test_zero_shot_from_the_command_line(tmp_path, hf_labels, trained_ethanol_model):
    import json
    import yaml
    from gmnn.cli import finetune_main
    config = {"output_dir": str(tmp_path / "zs"), "data": {"train_file": str(hf_labels), "train_index": "0:10"},
              "training": {"force_weight": 0}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config))
    pretrained = save_pretrained(tmp_path, trained_ethanol_model)
    assert finetune_main([str(tmp_path / "ft.yaml"), "--from", str(pretrained), "--zero-shot", "--no-progress"]) == 0
    final = json.loads((tmp_path / "zs" / "final_metrics.json").read_text())
    assert final["selection"]["method"] == "zero-shot" and final["best_epoch"] == 0


def test_finetune_defaults_fill_only_the_training_fields_not_given(tmp_path, hf_labels, trained_ethanol_model):
    from gmnn.config import FINETUNE_TRAINING_DEFAULTS
    from gmnn.finetuning import check_config
    config = cv_config(tmp_path, hf_labels)  # gives epochs, not lr or batch_size
    check_config(config, trained_ethanol_model)
    assert config.training.epochs == 6
    assert config.training.lr == FINETUNE_TRAINING_DEFAULTS["lr"]
    assert config.training.batch_size == FINETUNE_TRAINING_DEFAULTS["batch_size"]


def test_resumed_cv_finetune_that_finished_does_not_run_again(tmp_path, hf_labels, trained_ethanol_model, monkeypatch):
    import gmnn.finetuning as finetuning
    pretrained = save_pretrained(tmp_path, trained_ethanol_model)
    first = finetuning.finetune(cv_config(tmp_path, hf_labels), pretrained, show_progress=False)
    monkeypatch.setattr(finetuning, "cross_validate", lambda *a, **k: pytest.fail("cross-validation ran again"))
    again = finetuning.finetune(cv_config(tmp_path, hf_labels), pretrained, show_progress=False, resume=True)
    assert again["selection"]["epoch"] == first["selection"]["epoch"]


# ---- co-training: replaying pre-training-level structures with level-specific shifts ------------

def test_replay_keeps_the_pretraining_forces_that_energy_only_finetuning_loses(tmp_path, hf_labels, trained_ethanol_model):
    """Fine-tune on 8 HF/STO-3G energies and forces, with and without replaying 40 PBE frames
    (energies and forces, the pre-training level): the replayed energies are moved onto the HF
    level (the zero-shot model misses them by ~0 on average, not by the ~70 eV between the
    levels), and replay keeps the PBE forces of unseen frames that the fine-tune alone gives up
    for HF's (measured: pre-trained 168 meV/A, HF fine-tune 700, with replay 204)."""
    from ase.io import write
    from gmnn.finetuning import finetune, replay_graphs
    from gmnn.loading import load
    pbe = read_structures(ETHANOL, energy_unit="kcal/mol")
    replay_file = tmp_path / "pbe_replay.xyz"
    write(replay_file, [s.to_labelled_atoms() for s in pbe[:40]])
    pbe_unseen = load_data(config_from_dict({"data": {"train_file": str(ETHANOL), "train_index": "88:",
                                                      "energy_unit": "kcal/mol", "n_valid": 0}}),
                           trained_ethanol_model.atomic_numbers, trained_ethanol_model.cutoff).train

    config = finetune_config(tmp_path / "shift", hf_labels)
    config.finetune.replay_file = str(replay_file)
    _, data = prepare(config, trained_ethanol_model)
    replay = replay_graphs(config.finetune, trained_ethanol_model, data)
    p = predict_graphs(zero_shot(trained_ethanol_model, data), replay, forces=False)
    assert abs(np.mean(p.energy - p.energy_ref)) < 1e-6
    assert abs(pbe[0].energy - replay[0].energy) > 10  # the PBE energies did move onto the HF zero

    pbe_forces = {}
    pretrained = save_pretrained(tmp_path, trained_ethanol_model)
    for replaying in (False, True):
        config = finetune_config(tmp_path / f"replay{replaying}", hf_labels, epochs=40, force_weight=4.0)
        config.finetune.selection = "validation"
        if replaying:
            config.finetune.replay_file = str(replay_file)
        finetune(config, pretrained, show_progress=False)
        model = load(tmp_path / f"replay{replaying}" / "run" / "best.ckpt")
        pbe_forces[replaying] = error_metrics(predict_graphs(model, pbe_unseen))["forces_mae"]
    start = error_metrics(predict_graphs(trained_ethanol_model, pbe_unseen))["forces_mae"]
    print(f"\nPBE force MAE on unseen frames, meV/A: pre-trained {1000 * start:.0f}, HF fine-tune "
          f"{1000 * pbe_forces[False]:.0f}, with PBE replay {1000 * pbe_forces[True]:.0f}")
    assert pbe_forces[True] < 0.7 * pbe_forces[False]
