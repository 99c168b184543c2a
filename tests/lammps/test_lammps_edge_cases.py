"""Edge cases of pair_style gmnn: atoms closer than the basis' r_min, coincident atoms, an
isolated atom (exactly the element's energy shift), and hybrid/overlay with a real second
style on a NULL-mapped atom type. In-process LAMMPS runs; everything skips without the plugin."""
import numpy as np
import pytest

from lammps_testing import lammps_header, place_in_box, write_data
from parity_testing import make_model, reference

TOL = 1e-8  # eV, eV/Å

PER_ATOM = """
compute peatom all pe/atom
compute statom all stress/atom NULL virial
"""


def run_gmnn(inproc, data, model, periodic=False, elements="C H O"):
    return inproc.run(lammps_header(data, periodic) + f"""
pair_style gmnn
pair_coeff * * {model} {elements}
{PER_ATOM}
run 0
""")


# ---- atoms closer than r_min -------------------------------------------------------------


@pytest.mark.parametrize("r", [0.45, 0.2, 0.05, 1e-4])
def test_atoms_closer_than_r_min_give_finite_results_equal_to_python(inproc, model64, calculator, tmp_path, r):
    """The first Gaussian sits at r_min = 0.5 Å; below it the basis, the cosine cutoff and the
    unit vectors stay finite for any r > 0, so energy and forces are finite and LAMMPS agrees
    with the Python calculator. (GM-NN has no repulsive core: the energy stays finite as
    r -> 0, so nothing stops two atoms from collapsing in hot MD; add a repulsive pair style
    with hybrid/overlay for that.)"""
    from ase import Atoms
    atoms = place_in_box(Atoms("CCHO", positions=[[0, 0, 0], [r, 0, 0], [0, 1.1, 0], [0, 0, 1.4]]))
    ref = reference(calculator, atoms)
    out = run_gmnn(inproc, write_data(atoms, tmp_path / "close.data"), model64)
    assert np.isfinite(out["pe"]) and np.all(np.isfinite(out["forces"])), (out["pe"], out["forces"])
    assert np.all(np.isfinite(out["energies"])) and np.all(np.isfinite(out["atom_virial"]))
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])
    assert np.abs(out["forces"] - ref["forces"]).max() < TOL, (out["forces"], ref["forces"])
    # Newton's third law holds also at this distance
    assert np.abs(out["forces"].sum(axis=0)).max() < 1e-9


def test_energy_is_continuous_below_r_min(inproc, model64, tmp_path):
    """E(r) of a C-C pair from 0.6 Å down to 0.01 Å: finite, and a smooth curve (no jumps at
    r_min): the finite-difference slope matches the LAMMPS force."""
    from ase import Atoms
    rs = np.linspace(0.6, 0.01, 8)
    h = 1e-5
    for r in rs:
        e = {}
        for d in (-h, 0.0, h):
            atoms = place_in_box(Atoms("CC", positions=[[0, 0, 0], [r + d, 0, 0]]))
            # place_in_box shifts both atoms equally; the box is the same for all three
            out = run_gmnn(inproc, write_data(atoms, tmp_path / "pair.data"), model64)
            e[d] = out
        f_fd = -(e[h]["pe"] - e[-h]["pe"]) / (2 * h)
        f_x = e[0.0]["forces"][1, 0]
        assert np.isfinite(e[0.0]["pe"]) and np.isfinite(f_x)
        assert abs(f_fd - f_x) < 1e-5 * max(1.0, abs(f_x)), (r, f_fd, f_x)


def test_coincident_atoms_are_finite_or_a_clear_error(inproc, model64, tmp_path):
    from ase import Atoms
    atoms = place_in_box(Atoms("CCH", positions=[[0, 0, 0], [0, 0, 0], [0, 1.1, 0]]))
    data = write_data(atoms, tmp_path / "same.data")
    try:
        out = run_gmnn(inproc, data, model64)
    except Exception as exc:  # a LAMMPS error is acceptable if it names the problem
        assert "same position" in str(exc) or "coincident" in str(exc), str(exc)
        return
    assert np.isfinite(out["pe"]) and np.all(np.isfinite(out["forces"])), (out["pe"], out["forces"])


# ---- isolated atoms ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("periodic", [False, True])
def test_isolated_atom_has_exactly_the_shift_energy(inproc, model_files, tmp_path, dtype, periodic):
    """One atom, no neighbour within the cutoff (also no periodic image: box 12 Å > r_c = 4 Å).
    All Gaussian moments vanish and the untrained network (zero biases) gives 0, so the energy
    is exactly the element's shift (in the model's dtype) and the force exactly zero."""
    from ase import Atoms
    shift_values = make_model().scale_shift.shift.detach().numpy()    # the model behind model_files
    shifts = dict(zip(["H", "C", "O"], shift_values.tolist()))          # by atomic number
    for symbol, shift in shifts.items():
        atoms = Atoms(symbol, positions=[[6.0, 5.5, 6.5]], cell=np.eye(3) * 12.0, pbc=periodic)
        data = write_data(atoms, tmp_path / f"{symbol}.data")
        out = run_gmnn(inproc, data, model_files[dtype], periodic)
        expected = shift if dtype == "float64" else float(np.float32(shift))
        assert out["pe"] == expected, (symbol, dtype, out["pe"], expected)
        assert out["energies"][0] == expected
        assert np.all(out["forces"] == 0.0), out["forces"]
        assert np.all(out["atom_virial"] == 0.0) and np.all(out["press"] == 0.0)


def test_isolated_atom_energy_with_trained_biases_is_shift_plus_network_of_zero(inproc, tmp_path):
    """With non-zero biases (a trained model) the empty-environment energy is
    shift + scale * network(0): LAMMPS gives that value, from the Python network on a zero
    feature vector, and zero force."""
    import torch
    import gmnn
    from ase import Atoms
    model = make_model(seed=3)
    with torch.no_grad():
        for layer in model.network.linear_layers():
            layer.bias.normal_()
    path = gmnn.export_model(model, tmp_path / "biased.pt", dtype="float64")
    zeros = torch.zeros(1, model.descriptor.n_features, dtype=torch.float64)
    with torch.no_grad():
        net0 = float(model.network(zeros).reshape(-1)[0])
    atoms = place_in_box(Atoms("COH", positions=[[0, 0, 0], [10, 0, 0], [0, 10, 0]]))
    out = run_gmnn(inproc, write_data(atoms, tmp_path / "iso.data"), path)
    # model element order is by atomic number: H, C, O
    scale = model.scale_shift.scale.detach().numpy()
    shift = model.scale_shift.shift.detach().numpy()
    expected = np.array([shift[1] + scale[1] * net0, shift[2] + scale[2] * net0, shift[0] + scale[0] * net0])
    assert abs(net0) > 1e-3                      # the biases do matter here
    assert np.abs(out["energies"] - expected).max() < 1e-10, (out["energies"], expected)
    assert np.all(out["forces"] == 0.0)


# ---- hybrid/overlay with a NULL-mapped type ------------------------------------------------


def lj(r, eps, sigma):
    sr6 = (sigma / r) ** 6
    return 4 * eps * (sr6 * sr6 - sr6), 24 * eps * (2 * sr6 * sr6 - sr6) / r   # energy, -dE/dr


def test_hybrid_overlay_gmnn_with_lj_on_a_null_type(inproc, model64, calculator, tmp_path):
    """Types 1 C, 2 Ar (NULL for gmnn), 3 H, 4 O: gmnn sees only C/H/O, lj/cut acts between Ar
    and every atom. Energy, forces and pressure are the gmnn result of the C/H/O atoms alone plus
    the analytic Lennard-Jones terms (NULL in the middle of the type list, not only at the end)."""
    from ase import Atoms
    from ase.build import molecule
    cell = np.diag([11.0, 11.5, 12.0])
    mol = molecule("CH3CH2OH")
    mol.translate([5.5, 5.75, 6.0] - mol.get_center_of_mass())
    ar = np.array([[1.0, 1.5, 1.2], [5.5, 10.5, 6.0], [9.0, 5.5, 10.4]])  # one Ar 3.6 Å from the molecule
    chem = Atoms(mol.get_chemical_symbols(), positions=mol.positions, cell=cell, pbc=True)
    ref = reference(calculator, chem)
    atoms = chem + Atoms("Ar3", positions=ar, cell=cell, pbc=True)
    from ase.io import write
    path = tmp_path / "hybrid.data"
    write(str(path), atoms, format="lammps-data", specorder=["C", "Ar", "H", "O"], atom_style="atomic",
          masses=True)
    eps, sigma, rc = 0.0104, 3.2, 5.0
    out = inproc.run(lammps_header(path, True) + f"""
pair_style hybrid/overlay gmnn lj/cut {rc}
pair_coeff * * gmnn {model64} C NULL H O
pair_coeff * * lj/cut 0.0 1.0
pair_coeff * 2 lj/cut {eps} {sigma}
pair_coeff 2 * lj/cut {eps} {sigma}
{PER_ATOM}
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz vol
run 0
""")
    # analytic LJ (no shift, no tail): every pair with an Ar within rc; minimum image suffices
    # (rc = 5 Å is less than half of every cell length)
    n = len(chem)
    e_lj = 0.0
    f_lj = np.zeros((len(atoms), 3))
    w_lj = np.zeros(6)
    for a in range(n, len(atoms)):
        for b in range(len(atoms)):
            if b == a or (b > n - 1 and b < a):
                continue
            d = atoms.positions[b] - atoms.positions[a]
            d -= np.round(d / np.diag(cell)) * np.diag(cell)
            r = np.linalg.norm(d)
            if r >= rc:
                continue
            e, fmag = lj(r, eps, sigma)
            e_lj += e
            f_lj[b] += fmag * d / r
            f_lj[a] -= fmag * d / r
            fb = fmag * d / r
            w_lj += np.array([d[0] * fb[0], d[1] * fb[1], d[2] * fb[2], d[0] * fb[1], d[0] * fb[2], d[1] * fb[2]])
    assert abs(e_lj) > 1e-3                                               # the LJ term is there
    assert abs(out["pe"] - (ref["energy"] + e_lj)) < TOL, (out["pe"], ref["energy"], e_lj)
    expected = f_lj.copy()
    expected[:n] += ref["forces"]
    assert np.abs(out["forces"] - expected).max() < TOL
    # pressure: gmnn virial (-stress * V) + LJ virial
    vol = atoms.get_volume()
    s = ref["stress"]
    w_gmnn = -np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]]) * vol
    from lammps_testing import NKTV2P_METAL
    w_out = out["press"] * vol / NKTV2P_METAL
    assert np.abs(w_out - (w_gmnn + w_lj)).max() < 1e-7, (w_out, w_gmnn + w_lj)


# ---- several atom types mapped to one element; boxes smaller than the cutoff -----------------


def test_two_types_mapped_to_one_element_act_as_that_element(inproc, model64, calculator, tmp_path):
    """`pair_coeff * * model C H O H`: types 2 and 4 are both hydrogen (e.g. to tag atoms for
    a thermostat or a dump). A defined result, as in LAMMPS' other many-body styles: the same
    energy and forces as with one hydrogen type."""
    from ase.io import write
    from parity_testing import ethanol_cluster
    atoms = place_in_box(ethanol_cluster(2))
    ref = reference(calculator, atoms)
    path = tmp_path / "tagged.data"
    types = {"C": 1, "H": 2, "O": 3}
    tags = [types[s] for s in atoms.get_chemical_symbols()]
    hydrogens = [k for k, s in enumerate(atoms.get_chemical_symbols()) if s == "H"]
    for k in hydrogens[::2]:
        tags[k] = 4  # every other hydrogen gets the second H type
    write(str(path), atoms, format="lammps-data", specorder=["C", "H", "O"], atom_style="atomic", masses=True)
    text = path.read_text().replace("3 atom types", "4 atom types")
    text = text.replace("Masses\n\n", "Masses\n\n4 1.008\n")
    head, body = text.split("Atoms # atomic\n\n")
    rows = body.strip().splitlines()
    rows = [" ".join([r.split()[0], str(tags[int(r.split()[0]) - 1]), *r.split()[2:]]) for r in rows]
    path.write_text(head + "Atoms # atomic\n\n" + "\n".join(rows) + "\n")
    out = run_gmnn(inproc, path, model64, elements="C H O H")
    assert abs(out["pe"] - ref["energy"]) < TOL
    assert np.abs(out["forces"] - ref["forces"]).max() < TOL


@pytest.mark.parametrize("boundary", ["f f f", "s s s", "p p f"])
def test_box_thinner_than_the_cutoff_in_a_non_periodic_direction(inproc, model64, calculator, tmp_path, boundary):
    """An ethanol molecule in a box that hugs it (0.1 Å margins) along non-periodic directions:
    2.0-2.4 Å wide in y and z, less than the model's 4 Å cutoff. Non-periodic directions have no
    images, so the result is the free molecule's (the slab's for p p f), with no error and no
    missing neighbour: LAMMPS gives the Python result."""
    from ase import Atoms
    from ase.build import molecule
    from ase.io import write
    mol = molecule("CH3CH2OH")
    mol.positions -= mol.positions.min(axis=0) - 0.1
    periodic = [c == "p" for c in boundary.split()]
    cell = np.where(periodic, mol.positions.max(axis=0) + 8.0, mol.positions.max(axis=0) + 0.1)
    assert all(cell[k] < model64_cutoff for k in (1, 2) if not periodic[k])
    atoms = Atoms(mol.get_chemical_symbols(), positions=mol.positions, cell=np.diag(cell), pbc=periodic)
    ref = reference(calculator, atoms)
    path = tmp_path / "thin.data"
    write(str(path), atoms, format="lammps-data", specorder=["C", "H", "O"], atom_style="atomic", masses=True)
    out = inproc.run(lammps_header(path, False).replace("boundary f f f", f"boundary {boundary}") + f"""
pair_style gmnn
pair_coeff * * {model64} C H O
{PER_ATOM}
run 0
""")
    assert abs(out["pe"] - ref["energy"]) < TOL, (out["pe"], ref["energy"])
    assert np.abs(out["forces"] - ref["forces"]).max() < TOL


model64_cutoff = 4.0  # make_model's default cutoff (lammps_testing.py)


def test_excluded_intermolecular_pairs_make_independent_molecules(inproc, model64, calculator, tmp_path):
    """`neigh_modify exclude molecule/inter all` (how the long-NVE test runs replicas of an
    isolated molecule in one box) removes those pairs from what gmnn sees: two ethanol molecules
    3 Å apart then have exactly the sum of the isolated molecules' energies and forces; without
    the exclusion they interact."""
    from ase.build import molecule
    from ase.io import write
    first = molecule("CH3CH2OH")
    second = first.copy()
    second.translate([0.0, 0.0, first.positions[:, 2].max() - second.positions[:, 2].min() + 3.0])
    refs = [reference(calculator, place_in_box(m)) for m in (first, second)]
    pair = place_in_box(first + second)
    pair.arrays["mol-id"] = np.repeat([1, 2], len(first))
    path = tmp_path / "pair.data"
    write(str(path), pair, format="lammps-data", specorder=["C", "H", "O"], atom_style="full", masses=True)
    results = {}
    for exclude in (True, False):
        results[exclude] = inproc.run(f"""
units metal
atom_style full
atom_modify map yes
boundary f f f
read_data {path}
{"neigh_modify exclude molecule/inter all" if exclude else ""}
pair_style gmnn
pair_coeff * * {model64} C H O
{PER_ATOM}
run 0
""")
    independent = results[True]
    assert abs(independent["pe"] - sum(r["energy"] for r in refs)) < TOL
    assert np.abs(independent["forces"] - np.concatenate([r["forces"] for r in refs])).max() < TOL
    assert abs(results[False]["pe"] - independent["pe"]) > 1e-3
