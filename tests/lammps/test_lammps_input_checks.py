"""LAMMPS inputs that used to run and give a silently wrong energy are refused with a message
that names the fix: atom types whose masses are not those of the elements pair_coeff maps them
to, bonded pairs dropped by the default special_bonds, and a training checkpoint given to
pair_coeff instead of an exported model. In-process LAMMPS runs; everything skips without the
plugin."""
import numpy as np
import pytest

from lammps_testing import lammps_header, place_in_box, write_data
from parity_testing import ELEMENTS, make_model, reference
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


# ---- bonds and special_bonds ---------------------------------------------------------------


def write_bonded_data(atoms, path):
    """atom_style full with one molecule ID and the covalent bonds (one bond type)."""
    from ase.io import write
    from ase.neighborlist import natural_cutoffs, neighbor_list
    atoms = atoms.copy()
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    partners = {a: [b for a2, b in zip(i, j) if a2 == a and b > a] for a in range(len(atoms))}
    atoms.arrays["bonds"] = np.array([",".join(f"{b}(1)" for b in partners[a]) or "_" for a in range(len(atoms))])
    atoms.arrays["mol-id"] = np.ones(len(atoms), dtype=int)
    write(str(path), atoms, format="lammps-data", specorder=ELEMENTS, atom_style="full", masses=True)
    assert "8 bonds" in path.read_text()  # ethanol: C-C, C-O, O-H, 5 C-H
    return str(path)


def bonded_input(data, model, special="", pair="pair_style gmnn\npair_coeff * * {model} C H O"):
    return f"""
units metal
atom_style full
atom_modify map yes
boundary f f f
read_data {data}
bond_style zero
bond_coeff *
{special}
{pair.format(model=model)}
{PER_ATOM}
run 0
"""


def test_bonded_atoms_with_default_special_bonds_are_an_error(inproc, model64, ethanol, tmp_path):
    """The default special_bonds (lj/coul 0 0 0) removes every 1-2, 1-3 and 1-4 pair from the
    neighbour list: the model would see ethanol as nearly separate atoms."""
    data = write_bonded_data(ethanol, tmp_path / "bonded.data")
    msg = run_expecting_error(inproc, bonded_input(data, model64))
    assert "special_bonds lj/coul 1.0 1.0 1.0" in msg, msg
    assert "9 atom(s)" in msg, msg
    # a 1-4 factor alone is enough to be refused
    msg = run_expecting_error(inproc, bonded_input(data, model64, special="special_bonds lj/coul 1.0 1.0 0.5"))
    assert "special_bonds lj/coul 1.0 1.0 1.0" in msg and "0.5" in msg, msg


def test_bonded_atoms_with_special_bonds_one_equal_the_unbonded_molecule(inproc, model64, ethanol, ethanol_data,
                                                                        tmp_path):
    data = write_bonded_data(ethanol, tmp_path / "bonded.data")
    bonded = inproc.run(bonded_input(data, model64, special="special_bonds lj/coul 1.0 1.0 1.0"))
    atomic = inproc.run(gmnn_input(ethanol_data, model64))
    assert abs(bonded["pe"] - atomic["pe"]) < TOL, (bonded["pe"], atomic["pe"])
    assert np.abs(bonded["forces"] - atomic["forces"]).max() < TOL


def test_hybrid_with_gmnn_special_one_masks_the_special_bits(inproc, model64, ethanol, ethanol_data, tmp_path):
    """A force field's special_bonds (0.5 here) for the other styles, `pair_modify pair gmnn
    special lj/coul 1 1 1` for gmnn: the neighbour list then carries the bonded pairs with their
    special bits set, which pair gmnn masks off; the result is the unbonded molecule's. Without
    the pair_modify, it is refused."""
    data = write_bonded_data(ethanol, tmp_path / "bonded.data")
    hybrid = "pair_style hybrid/overlay gmnn zero 4.0\npair_coeff * * gmnn {model} C H O\npair_coeff * * zero"
    special = "special_bonds lj/coul 0.5 0.5 0.5"
    msg = run_expecting_error(inproc, bonded_input(data, model64, special=special, pair=hybrid))
    assert "pair_modify pair gmnn special lj/coul 1.0 1.0 1.0" in msg, msg
    out = inproc.run(bonded_input(data, model64, special=special,
                                  pair=hybrid + "\npair_modify pair gmnn special lj/coul 1.0 1.0 1.0"))
    atomic = inproc.run(gmnn_input(ethanol_data, model64))
    assert abs(out["pe"] - atomic["pe"]) < TOL, (out["pe"], atomic["pe"])
    assert np.abs(out["forces"] - atomic["forces"]).max() < TOL


def test_molecule_ids_without_bonds_need_no_special_bonds(inproc, model64, ethanol, ethanol_data, tmp_path):
    """atom_style full with molecule IDs only (as the examples write for `neigh_modify exclude
    molecule/inter`): no bonded pairs, nothing dropped, default special_bonds are fine."""
    from ase.io import write
    atoms = ethanol.copy()
    atoms.arrays["mol-id"] = np.ones(len(atoms), dtype=int)
    path = tmp_path / "molid.data"
    write(str(path), atoms, format="lammps-data", specorder=ELEMENTS, atom_style="full", masses=True)
    out = inproc.run(bonded_input(path, model64).replace("bond_style zero\nbond_coeff *\n", ""))
    atomic = inproc.run(gmnn_input(ethanol_data, model64))
    assert abs(out["pe"] - atomic["pe"]) < TOL, (out["pe"], atomic["pe"])


# ---- a training checkpoint instead of a model file -----------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real training checkpoint (gmnn.checkpoint.save_checkpoint, as the trainer writes it)."""
    from gmnn.checkpoint import save_checkpoint
    path = tmp_path_factory.mktemp("runs") / "x" / "best.ckpt"
    save_checkpoint(path, {"model": make_model().checkpoint_state(), "epoch": 3})
    return str(path)


def test_checkpoint_given_to_pair_coeff_names_the_export_command(inproc, checkpoint, ethanol_data, tmp_path):
    msg = run_expecting_error(inproc, gmnn_input(ethanol_data, checkpoint))
    assert f"{checkpoint}' is a gmnn training checkpoint, not a model file" in msg, msg
    assert f"convert it with: gmnn-export {checkpoint} -o model.pt" in msg, msg
    # and that command does give a file pair_coeff loads
    from gmnn.cli import export_main
    assert export_main([checkpoint, "-o", str(tmp_path / "model.pt")]) == 0
    out = inproc.run(gmnn_input(ethanol_data, tmp_path / "model.pt"))
    assert np.isfinite(out["pe"])


def test_checkpoint_given_to_the_native_loader_names_the_export_command(native, checkpoint):
    with pytest.raises(RuntimeError) as info:
        native.Model(checkpoint)
    msg = str(info.value)
    assert "is a gmnn training checkpoint, not a model file" in msg, msg
    assert f"gmnn-export {checkpoint} -o model.pt" in msg, msg


def test_other_torch_save_files_say_what_they_are(inproc, ethanol_data, tmp_path):
    """A bare state_dict written with torch.save is not mistaken for a checkpoint either."""
    import torch
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)
    msg = run_expecting_error(inproc, gmnn_input(ethanol_data, path))
    assert "written by torch.save" in msg and "not an exported gmnn model" in msg, msg
    assert "is a gmnn training checkpoint" not in msg, msg
