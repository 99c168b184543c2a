"""Fixtures shared by the test-suite (helpers are in gmnn_testing.py and parity_testing.py)."""
import pytest
import torch

from gmnn_testing import CARBON, ETHANOL
from parity_testing import make_model


def pytest_configure(config):
    # One intra-op thread: on a 2-core machine shared with LAMMPS/MPI subprocesses of other
    # tests, two OpenMP threads oversubscribe the cores and run up to 100x slower.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ethanol_structures():
    from gmnn.data import read_structures
    return read_structures(ETHANOL, energy_unit="kcal/mol")


@pytest.fixture(scope="session")
def carbon_structures():
    from gmnn.data import read_structures
    return read_structures(CARBON)


@pytest.fixture(scope="session")
def trained_ethanol_model(tmp_path_factory):
    """A small model trained briefly on the shipped rMD17 ethanol frames (a few seconds)."""
    from gmnn.config import config_from_dict
    from gmnn.training import Trainer
    out = tmp_path_factory.mktemp("trained_ethanol")
    config = config_from_dict({
        "output_dir": str(out),
        "data": {"train_file": str(ETHANOL), "train_index": "0:80", "valid_file": str(ETHANOL),
                 "valid_index": "80:", "energy_unit": "kcal/mol"},
        "model": {"hidden": [64, 64], "dtype": "float64"},
        "training": {"epochs": 60, "batch_size": 10, "lr": 0.01},
    })
    trainer = Trainer(config, show_progress=False)
    trainer.run()
    return trainer.model.eval()


# ---- gmnn._native and the exported models it and LAMMPS run (test_native.py, tests/lammps) --------

@pytest.fixture(scope="session")
def native():
    return pytest.importorskip("gmnn._native", exc_type=ImportError,
                               reason="gmnn._native is not built; run pip install --no-build-isolation -e .")


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """{'float64': path, 'float32': path} of one exported model (cutoff 4 Å, widths 32-32)."""
    import gmnn
    d = tmp_path_factory.mktemp("models")
    model = make_model()
    return {dt: str(gmnn.export_model(model, d / f"gmnn_{dt}.pt", dtype=dt)) for dt in ("float64", "float32")}


@pytest.fixture(scope="session")
def model64(model_files):
    return model_files["float64"]


@pytest.fixture(scope="session")
def calculator(model64):
    from gmnn.calculator import GMNNCalculator
    return GMNNCalculator(model64)


@pytest.fixture(scope="session")
def calibrated_model(tmp_path_factory):
    """A model file of format 3 with a calibrated per-atom uncertainty (gmnn/uncertainty llpr):
    the untrained test model, calibrated on 20 + 10 rMD17 ethanol frames. Its values are what
    they are; the tests compare LAMMPS with Python on the same file."""
    import gmnn
    from gmnn import uncertainty
    from gmnn.data import read_structures
    from gmnn.graph import build_graphs
    from gmnn_testing import ETHANOL
    model = make_model()
    graphs = build_graphs(read_structures(ETHANOL, energy_unit="kcal/mol")[:30], model.atomic_numbers,
                          model.cutoff)
    uncertainty.fit(model, graphs[:20], graphs[20:])
    assert model.has_uncertainty
    d = tmp_path_factory.mktemp("calibrated_model")
    return str(gmnn.export_model(model, d / "gmnn_llpr.pt", dtype="float64"))
