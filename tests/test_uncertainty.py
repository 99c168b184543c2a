"""The model's own uncertainty (uncertainty.py): calibrated, invariant, larger where the model
has not been, and the same through every path (GMNN, model file, ASE calculator, gmnn-eval)."""
import copy
import json

import numpy as np
import pytest
import torch

from gmnn_testing import ETHANOL, FORMAT_1_MODEL


@pytest.fixture(scope="module")
def splits(trained_ethanol_model, ethanol_structures):
    from gmnn.graph import build_graphs
    graphs = build_graphs(ethanol_structures, trained_ethanol_model.atomic_numbers, trained_ethanol_model.cutoff)
    return graphs[:80], graphs[80:]


@pytest.fixture(scope="module")
def calibrated(trained_ethanol_model, splits):
    """The fixture model (trained on frames 0-79) calibrated on frames 80-99, and the summary."""
    from gmnn import uncertainty
    model = copy.deepcopy(trained_ethanol_model)
    summary = uncertainty.fit(model, *splits)
    return model.eval(), summary


def dimer(a, b, gap, seed=0):
    """Molecule b rotated at random and placed so its closest atom is `gap` Å from molecule a."""
    from scipy.spatial.transform import Rotation
    from gmnn.data import Structure
    rng = np.random.default_rng(seed)
    pa = a.positions - a.positions.mean(0)
    pb = Rotation.random(random_state=seed).apply(b.positions - b.positions.mean(0))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = 0.0
    while np.min(np.linalg.norm(pa[:, None] - (pb + shift * direction)[None], axis=2)) < gap:
        shift += 0.01
    return Structure(numbers=np.concatenate([a.numbers, b.numbers]), positions=np.concatenate([pa, pb + shift * direction]))


def test_calibration_matches_the_held_out_errors(calibrated, splits):
    """At the likelihood optimum the mean of error^2 / sigma^2 over the calibration errors is 1
    (scaling sigma up or down lowers the likelihood): energies per structure, forces per atom."""
    from gmnn.evaluation import observed_errors, predict_graphs
    model, summary = calibrated
    p = predict_graphs(model, splits[1], uncertainty=True)
    e_err, f_err = observed_errors(p)
    assert np.mean(e_err ** 2 / p.energy_uncertainty ** 2) == pytest.approx(1.0, abs=0.02)
    assert np.mean(f_err ** 2 / p.forces_uncertainty ** 2) == pytest.approx(1.0, abs=0.02)
    assert summary["n_held_out"] == 20 and summary["n_held_out_atoms"] == 180
    assert model.has_uncertainty


def test_uncertainty_is_invariant_like_the_energy(calibrated, ethanol_structures):
    """Rotating, translating and permuting the atoms changes neither sigma_E nor the per-atom
    sigma_F (which follow their atoms)."""
    from ase.build import sort  # noqa: F401  (ASE is there; the permutation is explicit below)
    from gmnn.calculator import GMNNCalculator
    calc = GMNNCalculator(calibrated[0])
    atoms = ethanol_structures[3].to_atoms()
    atoms.calc = calc
    e_sigma, f_sigma = atoms.calc.get_property("energy_uncertainty", atoms), atoms.calc.get_property("forces_uncertainty", atoms)
    moved = atoms.copy()
    moved.rotate(73.0, (0.3, -1.0, 0.5), center="COM")
    moved.translate((1.5, -2.0, 0.7))
    order = np.random.default_rng(1).permutation(len(atoms))
    moved = moved[order]
    moved.calc = calc
    assert moved.calc.get_property("energy_uncertainty", moved) == pytest.approx(e_sigma, rel=1e-10)
    assert moved.calc.get_property("forces_uncertainty", moved) == pytest.approx(f_sigma[order], rel=1e-10)
    assert e_sigma > 0 and np.all(f_sigma > 0)


def test_uncertainty_is_larger_where_the_model_has_not_been(calibrated, ethanol_structures):
    """Two molecules in contact (a monomer model never saw one) have atoms far less certain than
    any held-out monomer's; and squeezing them closer raises it further."""
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    model = calibrated[0]
    graphs = lambda structures: build_graphs(structures, model.atomic_numbers, model.cutoff)
    monomers = predict_graphs(model, graphs(ethanol_structures[80:]), uncertainty=True)
    worst_monomer = monomers.forces_uncertainty.reshape(20, 9).max(1)
    pairs = [dimer(ethanol_structures[80 + k], ethanol_structures[90 + k], 2.0, seed=k) for k in range(10)]
    dimers = predict_graphs(model, graphs(pairs), uncertainty=True)
    worst_dimer = dimers.forces_uncertainty.reshape(10, 18).max(1)
    assert np.median(worst_dimer) > worst_monomer.max(), (worst_dimer, worst_monomer)
    close = predict_graphs(model, graphs([dimer(ethanol_structures[80], ethanol_structures[90], 1.5, seed=0)]),
                           uncertainty=True)
    assert close.forces_uncertainty.max() > worst_dimer[0]
    # energies: every dimer is less certain than every monomer
    assert np.min(dimers.energy_uncertainty) > np.max(monomers.energy_uncertainty)


def test_model_file_and_calculator_give_the_models_uncertainty(calibrated, ethanol_structures, tmp_path):
    """export -> load -> ASE calculator: sigma_E and sigma_F equal the GMNN's (float64), in atom
    blocks too; the metadata says the file has an uncertainty."""
    import gmnn
    from gmnn.calculator import GMNNCalculator
    from gmnn.graph import build_graphs, collate
    from gmnn.inference import predict
    from gmnn.loading import load, read_metadata
    model = calibrated[0]
    path = gmnn.export_model(model, tmp_path / "m.pt")
    meta = read_metadata(path)
    assert meta["uncertainty"] == "llpr" and meta["format_version"] == "3"
    batch = collate(build_graphs(ethanol_structures[:4], model.atomic_numbers, model.cutoff))
    ours = predict(model, batch, uncertainty=True)
    for other in (load(path),):
        theirs = predict(other, batch, uncertainty=True, atoms_per_pass=5)
        for key in ("energy", "energy_uncertainty", "forces_uncertainty"):
            torch.testing.assert_close(theirs[key], ours[key], rtol=1e-12, atol=1e-14)
    atoms = ethanol_structures[2].to_atoms()
    atoms.calc = GMNNCalculator(path, atoms_per_pass=4)
    atoms.get_potential_energy()
    assert atoms.calc.results["energy_uncertainty"] == pytest.approx(float(ours["energy_uncertainty"][2]), rel=1e-12)
    np.testing.assert_allclose(atoms.calc.results["forces_uncertainty"], ours["forces_uncertainty"][18:27].numpy(),
                               rtol=1e-12)


def test_models_without_uncertainty_still_work_and_say_so(tmp_path, model_files, ethanol_structures):
    """A format-1 file, an uncalibrated model and a checkpoint from before uncertainty.py load and
    run; asking for their uncertainty is a clear error, and the calculator omits it."""
    from gmnn.calculator import GMNNCalculator
    from gmnn.checkpoint import load_model
    from gmnn.loading import load
    old = load(FORMAT_1_MODEL)
    assert not old.has_uncertainty
    atoms = ethanol_structures[0].to_atoms()
    atoms.calc = GMNNCalculator(old)
    atoms.get_potential_energy()
    assert "energy_uncertainty" not in atoms.calc.results
    with pytest.raises(ValueError, match="no uncertainty.*gmnn-export"):
        GMNNCalculator(old, uncertainty=True)
    with pytest.raises(ValueError, match="no calibrated uncertainty"):
        GMNNCalculator(model_files["float64"], uncertainty=True)
    # a checkpoint written before the uncertainty buffers existed
    from gmnn_testing import small_model
    from gmnn.checkpoint import save_checkpoint
    state = small_model().checkpoint_state()
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("uncertainty.")}
    save_checkpoint(tmp_path / "old.ckpt", {"model": state})
    model = load_model(tmp_path / "old.ckpt")
    assert not model.has_uncertainty


def test_gmnn_calibrate_and_gmnn_eval(tmp_path, trained_ethanol_model, monkeypatch):
    """gmnn-calibrate gives a checkpoint an uncertainty (refusing to overwrite its output);
    gmnn-eval then writes the uncertainty columns, the rank correlation and a calibration plot."""
    import csv
    from gmnn.checkpoint import load_model, save_checkpoint
    from gmnn.cli import calibrate_main, eval_main
    save_checkpoint(tmp_path / "model.ckpt", {"model": trained_ethanol_model.checkpoint_state()})
    monkeypatch.chdir(tmp_path)
    args = ["model.ckpt", "--train", str(ETHANOL), "--train-index", ":80", "--valid", str(ETHANOL),
            "--valid-index", "80:", "--energy-unit", "kcal/mol"]
    assert calibrate_main(args) == 0
    assert load_model(tmp_path / "model_calibrated.ckpt").has_uncertainty
    assert calibrate_main(args) == 2  # the output exists
    assert eval_main(["model_calibrated.ckpt", str(ETHANOL), "--index", "80:", "--energy-unit", "kcal/mol",
                      "--plot", "p"]) == 0
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())[ETHANOL.name]
    assert -1.0 <= metrics["energy_uncertainty_spearman"] <= 1.0
    assert metrics["energy_error_over_uncertainty_rms"] == pytest.approx(1.0, abs=0.02)  # its calibration set
    rows = list(csv.DictReader(open(tmp_path / "eval_metrics.csv")))  # next to eval_metrics.json
    assert len(rows) == 20 and float(rows[0]["energy_uncertainty"]) > 0 and float(rows[0]["max_forces_uncertainty"]) > 0
    assert (tmp_path / f"p_{ETHANOL.stem}_uncertainty.png").stat().st_size > 10_000


def test_a_network_without_hidden_layers_has_an_uncertainty_too(ethanol_structures):
    """hidden: [] is a linear model on the descriptor: its last layer's inputs are the features
    (the config fuzz found the constructor failing on it)."""
    from gmnn import build_model, uncertainty
    from gmnn.graph import build_graphs
    model = build_model(["H", "C", "O"], hidden=(), n_radial=2, n_basis=3, cutoff=4.0, dtype="float64")
    graphs = build_graphs(ethanol_structures[:30], model.atomic_numbers, model.cutoff)
    uncertainty.fit(model, graphs[:20], graphs[20:])
    assert model.has_uncertainty and model.uncertainty.whitening.shape == (model.descriptor.n_features + 1,) * 2
