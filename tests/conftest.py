import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gmnn_testing import CARBON, ETHANOL


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
