"""The shipped organic models (issue 17, examples/organic): organic-gfn2xtb (pre-trained on
GFN2-xTB) and organic-pbe-def2svp (that model fine-tuned on PBE/def2-SVP labels). Their cards true
to the models and to molecules.csv; each accurate at its level on ethanol, a molecule that no
training split holds (GFN2-xTB labels computed here by the project's own code; PBE/def2-SVP labels
from rMD17, computed by others); usable by name for fine-tuning."""
import csv
import json

import pytest
import torch
import yaml

import gmnn
from gmnn import pretrained
from gmnn.checkpoint import load_checkpoint
from gmnn.data import Structure, read_structures
from gmnn.evaluation import error_metrics, predict_graphs
from gmnn.graph import build_graphs
from gmnn.levels import Level, compute
from gmnn_testing import ETHANOL, ROOT

NAME = "organic-gfn2xtb"
PBE_NAME = "organic-pbe-def2svp"
MOLECULES = ROOT / "examples" / "organic" / "molecules.csv"
CCSDT = ROOT / "examples" / "transfer_learning" / "data" / "ethanol_ccsdt_ccpvdz.xyz"


@pytest.fixture(scope="module")
def model():
    return gmnn.load_pretrained(NAME)


@pytest.fixture(scope="module")
def card():
    return pretrained.pretrained_card(NAME)


@pytest.fixture
def rmd17_ethanol():
    """20 rMD17 ethanol frames (500 K DFT MD geometries, PBE/def2-SVP labels by others); ethanol is
    held out of the organic set."""
    return read_structures(ETHANOL, energy_unit="kcal/mol", index="0:20")


@pytest.mark.parametrize("name, level", [(NAME, "gfn2-xtb"), (PBE_NAME, "pbe/def2-svp")])
def test_the_card_describes_the_model_and_its_held_out_molecules(name, level):
    model, card = gmnn.load_pretrained(name), pretrained.pretrained_card(name)
    assert name in gmnn.list_pretrained()
    assert card["elements"] == model.symbols == ["H", "C", "N", "O"]
    assert card["level_of_theory"]["gmnn_label_level"] == level
    assert card["architecture"]["hidden"] == list(model.options.hidden)
    assert card["architecture"]["cutoff_A"] == model.cutoff
    path = gmnn.pretrained_path(name)
    assert card["sha256"] == pretrained.sha256(path) and card["size_bytes"] == path.stat().st_size < 5e6
    assert "optimizer" not in load_checkpoint(path) and model.has_uncertainty
    with open(MOLECULES) as f:
        heldout = {r["name"] for r in csv.DictReader(f) if r["split"] == "heldout"}
    assert set(card["training_data"]["heldout_molecules"]) == heldout and {"ethanol", "aspirin"} <= heldout
    errors = card["errors"][level]
    assert set(errors["heldout_per_molecule"]) == heldout
    if level == "gfn2-xtb":
        assert card["training_data"]["structures"] >= 100_000  # the GFN2-xTB minimum
    else:  # the PBE stage: started from the xTB model, held-out errors next to both baselines
        assert card["training_data"]["pre_trained_from"] == NAME
        assert card["training_data"]["molecules"] == 477
        assert errors["heldout_molecules"]["forces_mae_eV_per_A"] < errors["heldout_gfn2_xtb"]["forces_mae_eV_per_A"]
        assert (errors["heldout_molecules"]["forces_mae_eV_per_A"]
                < errors["heldout_molecules_zero_shot"]["forces_mae_eV_per_A"])


def xtb_labelled(structures):
    level = Level.parse("gfn2-xtb")
    out = []
    for s in structures:
        energy, forces = compute(s.numbers, s.positions, level)
        out.append(Structure(numbers=s.numbers, positions=s.positions, energy=energy, forces=forces))
    return out


def test_an_unseen_molecule_at_gfn2_xtb_to_the_cards_held_out_error(model, card, rmd17_ethanol):
    """20 rMD17 ethanol frames (500 K DFT MD geometries; ethanol is held out of the organic set),
    labelled here with GFN2-xTB: within 2x the card's held-out ethanol errors, and far better
    than a fresh model of the same architecture whose energy shifts are fitted to these very
    frames."""
    frames = xtb_labelled(rmd17_ethanol)
    graphs = build_graphs(frames, model.atomic_numbers, model.cutoff)
    errors = error_metrics(predict_graphs(model, graphs))
    stated = card["errors"]["gfn2-xtb"]["heldout_per_molecule"]["ethanol"]
    assert errors["energy_mae"] < 2 * stated["energy_mae_eV"] + 0.01
    assert errors["forces_mae"] < 2 * stated["forces_mae_eV_per_A"]

    from gmnn.scale_shift import fit_scale_shift
    torch.manual_seed(0)
    fresh = gmnn.GMNN(model.options)
    fit_scale_shift(fresh, graphs)
    fresh_errors = error_metrics(predict_graphs(fresh.eval(), graphs))
    assert fresh_errors["forces_mae"] > 5 * errors["forces_mae"]


def test_an_unseen_molecule_at_pbe_to_the_cards_held_out_error(model, rmd17_ethanol):
    """The same 20 rMD17 ethanol frames with their own PBE/def2-SVP labels (ORCA, not the PySCF of
    gmnn-label: the energy zero may differ by a constant, so energies are compared after removing
    the mean offset): the PBE model within 2x its card's held-out ethanol errors, and its forces
    far closer to PBE than those of the GFN2-xTB model it started from."""
    pbe = gmnn.load_pretrained(PBE_NAME)
    graphs = build_graphs(rmd17_ethanol, pbe.atomic_numbers, pbe.cutoff)
    predictions = predict_graphs(pbe, graphs)
    errors = error_metrics(predictions)
    stated = pretrained.pretrained_card(PBE_NAME)["errors"]["pbe/def2-svp"]["heldout_per_molecule"]["ethanol"]
    assert errors["forces_mae"] < 2 * stated["forces_mae_eV_per_A"]
    offset = predictions.energy - predictions.energy_ref
    assert abs(offset - offset.mean()).mean() < 2 * stated["energy_mae_eV"] + 0.01
    xtb_errors = error_metrics(predict_graphs(model, graphs))  # organic-gfn2xtb
    assert errors["forces_mae"] < 0.6 * xtb_errors["forces_mae"]


@pytest.mark.parametrize("name", [NAME, PBE_NAME])
def test_finetune_from_the_name_on_ccsdt_energies_of_an_unseen_molecule(tmp_path, name):
    from gmnn.cli import finetune_main
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"),
                                      "data": {"train_file": str(CCSDT), "train_index": "0:5"},
                                      "training": {"force_weight": 0, "threads": 1}, "finetune": {"folds": 3}}))
    assert finetune_main([str(config), "--from", name, "--zero-shot", "--no-progress"]) == 0
    run = tmp_path / "run"
    assert gmnn.checkpoint.load_model(run / "best.ckpt").symbols == ["H", "C", "N", "O"]
    assert json.loads((run / "final_metrics.json").read_text())["train"]["energy_mae"] < 0.1  # eV
