"""LAMMPS inputs that used to run and give a silently wrong energy are refused with a message
that names the fix: atom types whose masses are not those of the elements pair_coeff maps them
to. In-process LAMMPS runs; everything skips without the plugin."""
import pytest

from lammps_testing import lammps_header, place_in_box, reference, write_data
from test_lammps_errors import run_expecting_error

TOL = 1e-8  # eV, eV/Å

PER_ATOM = """
compute peatom all pe/atom
compute statom all stress/atom NULL virial
"""


@pytest.fixture(scope="module")
def ethanol():
    from ase.build import molecule
    return place_in_box(molecule("CH3CH2OH"))


@pytest.fixture
def ethanol_data(ethanol, tmp_path):
    """Types 1 C (12.011), 2 H (1.008), 3 O (15.999), as every test data file here."""
    return write_data(ethanol, tmp_path / "ethanol.data")


def gmnn_input(data, model, elements="C H O", style_args="", after=""):
    return lammps_header(data, False) + f"""
pair_style gmnn {style_args}
pair_coeff * * {model} {elements}
{after}
{PER_ATOM}
run 0
"""


# ---- atom-type masses against the mapped elements ------------------------------------------


def test_types_mapped_to_the_wrong_elements_are_an_error(inproc, model64, ethanol_data):
    """`pair_coeff * * m.pt H C O` on types C H O ran and gave an energy thousands of eV off
    (every carbon evaluated as hydrogen); now the masses give the mistake away."""
    msg = run_expecting_error(inproc, gmnn_input(ethanol_data, model64, elements="H C O"))
    assert "atom type 1 has mass 12.011" in msg and "maps it to H (standard atomic mass 1.008)" in msg, msg
    assert "atom type 2 has mass 1.008" in msg and "maps it to C (standard atomic mass 12.011)" in msg, msg
    assert "atom type 3" not in msg, msg  # O is mapped right
    assert "check_masses no" in msg, msg


def test_correct_mapping_with_rounded_masses_runs(inproc, model64, calculator, ethanol, ethanol_data):
    """Masses rounded to integers (12, 1, 16: within 5 % of the standard masses) are accepted,
    and the energy is the Python calculator's."""
    out = inproc.run(gmnn_input(ethanol_data, model64, after="mass 1 12.0\nmass 2 1.0\nmass 3 16.0"))
    ref = reference(calculator, ethanol)
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])


def test_deuterium_is_an_error_unless_check_masses_is_off(inproc, model64, calculator, ethanol, ethanol_data):
    """Deuterium (2.014, twice the mass of H) set after pair_coeff is caught at `run`; with
    `pair_style gmnn check_masses no` it runs, with the energy of the hydrogen molecule (masses
    do not enter the potential energy)."""
    deuterium = "mass 2 2.014"
    msg = run_expecting_error(inproc, gmnn_input(ethanol_data, model64, after=deuterium))
    assert "atom type 2 has mass 2.014" in msg and "maps it to H (standard atomic mass 1.008)" in msg, msg
    out = inproc.run(gmnn_input(ethanol_data, model64, style_args="check_masses no", after=deuterium))
    ref = reference(calculator, ethanol)
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])


def test_check_masses_needs_yes_or_no(inproc, model64, ethanol_data):
    msg = run_expecting_error(inproc, gmnn_input(ethanol_data, model64, style_args="check_masses maybe"))
    assert "maybe" in msg, msg
