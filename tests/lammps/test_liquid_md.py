"""examples/liquid_ethanol/liquid_md.py end to end on a small box: NPT equilibration and
production in LAMMPS (gmnn + D3), then the analysis of the dumped frames; the density it computes
from the frames is the density LAMMPS reports, the molecules are those of the box, and a finished
study is not run again. (The model is the monomer-only ethanol model: it breaks molecules in the
liquid within some 15 fs, so the run is kept to 10 fs.) D3 as the liquid runs use it: cut at 12 Å,
its lost pressure added back to the barostat's target, on the outer level of rRESPA."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def liquid_md():
    sys.path.insert(0, str(ROOT / "examples" / "liquid_ethanol"))
    import liquid_md
    return liquid_md


def test_liquid_study_runs_resumes_and_agrees_with_lammps(liquid_md, lmp_exe, tmp_path):
    import gmnn
    model = gmnn.export_model("ethanol-pbe-def2svp", tmp_path / "pbe.pt", dtype="float32")
    out = tmp_path / "study"
    argv = ["--model", str(model), "--name", "t", "--out", str(out), "--molecules", "27", "--d3",
            "--equilibrate-ps", "0.002", "--production-ps", "0.008", "--dump-every", "4"]
    liquid_md.main(argv)
    result = json.loads((out / "liquid.json").read_text())
    assert result["molecules"] == 27 and result["atoms"] == 243 and result["frames"] == 5
    log = liquid_md.thermo(out / "log.production")
    assert len(log["v_rho"]) == 5 and np.isclose(log["Time"][0], 0.002) and np.isclose(log["Time"][-1], 0.01)
    assert result["density_g_cm3"] == pytest.approx(result["density_g_cm3_log"], rel=1e-6)
    assert 0.7 < result["density_g_cm3"] < 0.9 and np.isfinite(result["temperature_K_mean"])
    deck = (out / "in.production").read_text()
    assert "dispersion/d3 bj pbe 12 10" in deck and "run_style respa 2 4 hybrid 1 2" in deck
    tail = json.loads((out / "d3.json").read_text())["tail_bar"]
    assert -300 < tail < -30  # the D3 pressure beyond 12 Å, added back to the barostat's target:
    assert f"iso {1 - tail:.1f} {1 - tail:.1f}" in deck
    assert result["force_uncertainty_max_eV_A"] > 0  # the model knows its uncertainty: its largest sigma_F
    assert (out / "liquid.png").stat().st_size > 0
    dump = (out / "production.dump").stat().st_mtime_ns
    liquid_md.main(argv)  # finished stages are not run again
    assert (out / "production.dump").stat().st_mtime_ns == dump
