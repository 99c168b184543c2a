"""The shipped liquid ethanol models (examples/liquid_ethanol/models, issue 15) on data they never
saw: the held-out clusters and dimers of another droplet run (PBE/def2-SVP, committed labels),
through their interaction energies and forces (gmnn.interaction), and the CCSD(T) test energies."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "liquid_ethanol" / "models"


@pytest.fixture(scope="module")
def heldout():
    sys.path.insert(0, str(ROOT / "examples" / "liquid_ethanol"))
    import heldout
    pairs = heldout.test_set()
    assert len(pairs) >= 10, "the held-out labels are committed (examples/liquid_ethanol/data)"
    return heldout, pairs


def test_liquid_models_know_molecules_meeting_as_pbe_does(heldout):
    from gmnn.loading import load
    module, pairs = heldout
    errors = {name: module.errors(load(model), pairs)["all"] for name, model in (
        ("monomer-only", "ethanol-pbe-def2svp"), ("pbe", MODELS / "ethanol-liquid-pbe.ckpt"),
        ("ccsdt", MODELS / "ethanol-liquid-ccsdt.ckpt"))}
    assert errors["monomer-only"]["interaction_forces_mae_meV_A"] > 300
    for name in ("pbe", "ccsdt"):  # the CCSD(T) fine-tune kept the intermolecular part
        assert errors[name]["interaction_forces_mae_meV_A"] < 35, errors[name]
        assert errors[name]["interaction_energy_mae_meV"] < 0.1 * errors["monomer-only"]["interaction_energy_mae_meV"]
    assert errors["pbe"]["forces_mae_meV_A"] < 50  # PBE totals too; the CCSD(T) model's molecules are CCSD(T)'s
    assert errors["ccsdt"]["forces_mae_meV_A"] > 100


def test_liquid_models_have_an_uncertainty_and_the_ccsdt_one_is_ccsdt():
    from gmnn.data import read_structures
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    from gmnn.loading import load
    from gmnn.units import ENERGY_UNITS
    test = read_structures(ROOT / "examples" / "transfer_learning" / "data" / "ethanol_ccsdt_ccpvdz.xyz", index="50:")
    mae = {}
    for name in ("pbe", "ccsdt"):
        model = load(MODELS / f"ethanol-liquid-{name}.ckpt")
        assert model.has_uncertainty
        p = predict_graphs(model, build_graphs(test, model.atomic_numbers, model.cutoff), forces=False)
        mae[name] = float(np.mean(np.abs(p.energy - p.energy_ref))) / ENERGY_UNITS["kcal/mol"]
    assert mae["ccsdt"] < 0.5 and mae["pbe"] > 20  # kcal/mol; PBE's energy zero is not CCSD(T)'s
