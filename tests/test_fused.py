"""The fused path (python/gmnn/fused.py: GMNN.forward_gradients, the energies and their gradient
w.r.t. the edge vectors without autograd) against the reference it replaces at inference, autograd
over GMNN.forward: the same atomic energies (less their shifts) and edge gradients, relative in the
2-norm over the structure, to 1e-12 in float64 and to 1e-6 in float32 -- or, in float32, to twice
the float32 autograd result's own distance from the float64 one where that is larger: float32
rounding alone puts either path 0.2-3e-6 from float64 (4-atom carbon frames with 80 neighbours per
atom, whose small energies are differences of large sums), so the two float32 paths can differ by
more than 1e-6 while being equally right.

Models are small and untrained, with random weights, biases, scales and shifts, so that every term
of the backward carries weight and a wrong one fails."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from gmnn_testing import CARBON, ETHANOL, FORMAT_1_MODEL, small_model

RTOL = {"float32": 1e-6, "float64": 1e-12}


def random_model(elements, dtype, seed=0, **options):
    """small_model with random biases and per-element scales too (the defaults are 0 and 0.7)."""
    model = small_model(elements, seed=seed, dtype="float64", **options)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in model.network.linear_layers():
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
        model.scale_shift.scale.copy_(0.5 + torch.rand(len(elements), generator=g, dtype=torch.float64))
    return model.to(torch.float32 if dtype == "float32" else torch.float64).eval()


def edges(model, atoms):
    """(edge_vectors in the model dtype, centers, neighbors, species, n_atoms) of `atoms`."""
    from gmnn.graph import species_lookup
    from gmnn.neighbors import neighbor_list
    nl = neighbor_list(atoms.positions, model.cutoff, atoms.cell.array, atoms.pbc)
    species = torch.from_numpy(species_lookup(model.atomic_numbers)[atoms.numbers])
    return (torch.from_numpy(nl.vectors).to(model.dtype), torch.from_numpy(nl.centers),
            torch.from_numpy(nl.neighbors), species, len(atoms))


def autograd_reference(model, vectors, centers, neighbors, species, n):
    """Atomic energies and dE/d(edge_vectors) by autograd over forward (what inference.predict did)."""
    x = vectors.detach().clone().requires_grad_(True)
    energies = model(x, centers, neighbors, species, n)
    if x.shape[0] == 0:
        return energies.detach(), torch.zeros_like(x)
    (grad,) = torch.autograd.grad(energies.sum(), x, allow_unused=True)
    return energies.detach(), torch.zeros_like(x) if grad is None else grad


def relative(got, want, offset=None):
    """||got - want|| / ||want|| in float64 (offset subtracted from both: the energies' shifts)."""
    got, want = got.double(), want.double()
    if offset is not None:
        got, want = got - offset, want - offset
    scale = want.norm().item()
    return (got - want).norm().item() / scale if scale > 0 else (got - want).norm().item()


def float32_bound(model, inputs, e_ref, g_ref, shift):
    """(energy bound, gradient bound): RTOL["float32"], or twice the float32 autograd result's
    distance from the same model in float64 where that is larger (see the module docstring)."""
    import copy
    exact = copy.deepcopy(model).double()
    e64, g64 = autograd_reference(exact, inputs[0].double(), *inputs[1:])
    rtol = RTOL["float32"]
    return max(rtol, 2 * relative(e_ref, e64, shift)), max(rtol, 2 * relative(g_ref, g64))


def assert_fused_matches_autograd(model, atoms, dtype, what):
    vectors, centers, neighbors, species, n = inputs = edges(model, atoms)
    e_ref, g_ref = autograd_reference(model, *inputs)
    e, g = model.forward_gradients(*inputs)
    assert e.dtype == torch.float64 and g.dtype == vectors.dtype and g.shape == vectors.shape
    shift = model.scale_shift.shift[species[:n]]
    de, dg = relative(e, e_ref, shift), relative(g, g_ref)
    bound_e, bound_g = (RTOL[dtype],) * 2 if dtype == "float64" else float32_bound(model, inputs, e_ref, g_ref, shift)
    print(f"{what} {dtype}: {n} atoms, {len(centers)} edges, energies {de:.1e} (bound {bound_e:.1e}), "
          f"edge gradients {dg:.1e} (bound {bound_g:.1e}) relative")
    assert de <= bound_e, f"{what} {dtype}: atomic energies differ by {de:.2e} relative (> {bound_e:.1e})"
    assert dg <= bound_g, f"{what} {dtype}: edge gradients differ by {dg:.2e} relative (> {bound_g:.1e})"


@pytest.fixture(scope="module")
def ethanol_atoms():
    from ase.io import read
    return read(ETHANOL, index="0:3")


@pytest.fixture(scope="module")
def carbon_atoms():
    from ase.io import read
    return read(CARBON, index="0:3")  # 4 atoms each, periodic


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_radial", [3, 5, 7])
def test_molecule_energies_and_edge_gradients_match_autograd(ethanol_atoms, n_radial, dtype):
    """Ethanol (H, C, O: element-pair radial functions) with 3, 5 and 7 radial channels."""
    model = random_model(("H", "C", "O"), dtype, n_radial=n_radial, hidden=(16, 8))
    for k, atoms in enumerate(ethanol_atoms):
        assert_fused_matches_autograd(model, atoms, dtype, f"ethanol frame {k}, S={n_radial}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_periodic_carbon_matches_autograd(carbon_atoms, dtype):
    """Carbon GAP-17 frames: 4 atoms in a small periodic cell, ~80 edges per atom, most of them to
    periodic images."""
    model = random_model(("C",), dtype, hidden=(32, 16))
    for k, atoms in enumerate(carbon_atoms):
        assert_fused_matches_autograd(model, atoms, dtype, f"carbon GAP frame {k}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rattled_diamond_supercell_matches_autograd(dtype):
    """216 atoms of rattled diamond, r_c 5 Å (~80 neighbours each), the default 5 channels."""
    atoms = bulk("C", "diamond", a=3.57, cubic=True) * (3, 3, 3)
    atoms.rattle(0.1, seed=3)
    assert_fused_matches_autograd(random_model(("C",), dtype, hidden=(32, 16)), atoms, dtype, "diamond 3x3x3")


def few_neighbours():
    """An isolated O, an H2 pair (each H exactly one neighbour), a C with three H at mixed distances
    (one near the cutoff) and a lone C far off: centres with 0, 1 and 3 neighbours."""
    return Atoms("OHHCHHHC", positions=[[0, 0, 0], [20, 0, 0], [20.74, 0, 0], [0, 20, 0], [1.09, 20, 0],
                                        [0, 21.5, 0.3], [-0.5, 20, 3.8], [0, 0, 40]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_isolated_atoms_and_single_neighbours_match_autograd(dtype):
    model = random_model(("H", "C", "O"), dtype, hidden=(16,))
    assert_fused_matches_autograd(model, few_neighbours(), dtype, "0, 1 and 3 neighbours")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_edges_and_no_centres(dtype):
    """All atoms isolated (no edges): the empty-environment energies and an empty gradient; and a
    call with no centres at all (an MPI rank without local atoms)."""
    model = random_model(("H", "C", "O"), dtype, hidden=(16,))
    atoms = Atoms("HCO", positions=[[0, 0, 0], [10, 0, 0], [0, 10, 0]])
    assert_fused_matches_autograd(model, atoms, dtype, "no edges")
    vectors, centers, neighbors, species, n = edges(model, atoms)
    e, g = model.forward_gradients(vectors, centers, neighbors, species[:0], 0)
    assert e.shape == (0,) and g.shape == (0, 3)


def test_network_without_hidden_layers_matches_autograd(ethanol_atoms):
    """hidden=(): the last layer's input is the descriptor itself."""
    assert_fused_matches_autograd(random_model(("H", "C", "O"), "float64", hidden=()), ethanol_atoms[0],
                                  "float64", "no hidden layer")


def calibrated(model, seed=5):
    """`model` with a random but valid last-layer uncertainty (as uncertainty.fit leaves it)."""
    u = model.uncertainty
    d = u.whitening.shape[0]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        u.whitening.copy_(torch.randn((d, d), generator=g, dtype=torch.float64) / d)
        for name, value in (("energy_scale", 0.3), ("energy_floor", 0.01), ("force_scale", 0.2),
                            ("force_floor", 0.02)):
            getattr(u, name).fill_(value)
    assert model.has_uncertainty
    return model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_uncertainty_outputs_match_forward_uncertainty(ethanol_atoms, dtype):
    """forward_uncertainty_gradients: forward_uncertainty's energies, sigma_F and phi, and the
    edge gradients of forward_gradients."""
    model = calibrated(random_model(("H", "C", "O"), dtype, hidden=(16, 8)))
    vectors, centers, neighbors, species, n = edges(model, ethanol_atoms[1])
    e_ref, sigma_ref, phi_ref = model.forward_uncertainty(vectors, centers, neighbors, species, n)
    _, g_ref = autograd_reference(model, vectors, centers, neighbors, species, n)
    e, sigma, phi, g = model.forward_uncertainty_gradients(vectors, centers, neighbors, species, n)
    shift = model.scale_shift.shift[species[:n]]
    for name, got, want, offset in (("energies", e, e_ref, shift), ("sigma_F", sigma, sigma_ref, None),
                                    ("phi", phi, phi_ref, None), ("edge gradients", g, g_ref, None)):
        d = relative(got, want, offset)
        assert d <= RTOL[dtype], f"{name} differ by {d:.2e} relative (> {RTOL[dtype]})"


# ---- where it is used: inference.predict (ASE calculator), the model file, gmnn._native ------------

def batch_of(model, atoms):
    from gmnn.graph import GraphBatch
    vectors, centers, neighbors, species, n = edges(model, atoms)
    periodic = bool(atoms.pbc.all())
    return GraphBatch(species=species, centers=centers, neighbors=neighbors, edge_vectors=vectors.double(),
                      atom_structure=torch.zeros(n, dtype=torch.long), n_atoms=torch.tensor([n]),
                      volume=torch.tensor([atoms.get_volume() if periodic else 0.0], dtype=torch.float64),
                      energy=None, forces=None, force_mask=None)


@pytest.mark.parametrize("atoms_per_pass", [None, 5])
def test_predict_forces_and_stress_are_the_same_both_ways(carbon_atoms, atoms_per_pass):
    """predict (the ASE calculator's path) takes forward_gradients by default; forces, stress and
    energies equal autograd's, also in blocks of 5 atoms (neighbours renumbered as ghosts)."""
    from gmnn.inference import predict
    model = random_model(("C",), "float64", hidden=(16,))
    batch = batch_of(model, carbon_atoms[0])
    kw = dict(forces=True, stress=True, atoms_per_pass=atoms_per_pass, force_dtype=torch.float64)
    ref, out = predict(model, batch, fused=False, **kw), predict(model, batch, **kw)
    assert out["forces"].grad_fn is None  # the fused path: no autograd graph
    for key in ("energy", "atomic_energies", "forces", "stress"):
        d = relative(out[key], ref[key], model.scale_shift.shift[0] if "energ" in key else None)
        assert d <= 1e-12, f"{key}: {d:.2e} relative"


def test_force_training_keeps_autograd(ethanol_atoms):
    """create_graph (force training differentiates the forces again) never takes the fused path."""
    from gmnn.inference import predict
    model = random_model(("H", "C", "O"), "float64", hidden=(8,))
    out = predict(model, batch_of(model, ethanol_atoms[0]), forces=True, create_graph=True)
    assert out["forces"].requires_grad
    with pytest.raises(ValueError, match="forward_gradients"):
        predict(model, batch_of(model, ethanol_atoms[0]), forces=True, create_graph=True, fused=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{dtype: (GMNN in that dtype, its model file)}: one calibrated C/H/O model exported twice."""
    import copy
    import gmnn
    d = tmp_path_factory.mktemp("fused_models")
    model = calibrated(random_model(("H", "C", "O"), "float64", hidden=(16, 8)))
    out = {}
    for dtype in ("float64", "float32"):
        path = gmnn.export_model(model, d / f"fused_{dtype}.pt", dtype=dtype)
        out[dtype] = (copy.deepcopy(model).to(torch.float32 if dtype == "float32" else torch.float64), str(path))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_file_keeps_the_fused_methods(exported, ethanol_atoms, dtype):
    """The frozen TorchScript file has forward_gradients and forward_uncertainty_gradients, and
    predict on the file gives the GMNN's autograd energies, forces and uncertainties."""
    from gmnn.inference import _fused_method, predict
    from gmnn.loading import load
    model, path = exported[dtype]
    loaded = load(path)
    assert _fused_method(loaded, False) is not None and _fused_method(loaded, True) is not None
    batch = batch_of(model, ethanol_atoms[2])
    ref = predict(model, batch, forces=True, uncertainty=True, fused=False, force_dtype=torch.float64)
    out = predict(loaded, batch, forces=True, uncertainty=True, fused=True, force_dtype=torch.float64)
    shift = model.scale_shift.shift[batch.species]
    for key, offset in (("atomic_energies", shift), ("forces", None), ("forces_uncertainty", None)):
        d = relative(out[key], ref[key], offset)
        assert d <= RTOL[dtype], f"{key} ({dtype} file): {d:.2e} relative (> {RTOL[dtype]})"


def test_model_file_without_fused_methods_falls_back_to_autograd(ethanol_atoms):
    """A model file exported before fused.py (the committed format-1 file) has no forward_gradients:
    predict takes autograd, with the same forces as before."""
    from gmnn.inference import _fused_method, predict
    from gmnn.loading import load
    old = load(FORMAT_1_MODEL)
    assert _fused_method(old, False) is None
    batch = batch_of(old, ethanol_atoms[0])
    out = predict(old, batch, forces=True)
    ref = predict(old, batch, forces=True, fused=False)
    # (not bitwise: TorchScript's profiling executor optimises the graph after its first calls)
    assert relative(out["forces"], ref["forces"]) <= RTOL["float32"]
    with pytest.raises(ValueError, match="forward_gradients"):
        predict(old, batch, forces=True, fused=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_evaluator_uses_the_fused_methods(exported, ethanol_atoms, dtype):
    """gmnn._native (the C++ behind pair_style gmnn) calls forward_gradients when the file has it:
    the same energies, forces and sigma_F as its autograd path (use_fused False)."""
    native = pytest.importorskip("gmnn._native", exc_type=ImportError)
    model, path = exported[dtype]
    m = native.Model(path)
    if not hasattr(m, "has_fused_gradients"):
        pytest.skip("gmnn._native predates the fused path; rebuild it (pip install --no-build-isolation -e .)")
    assert m.has_fused_gradients and m.use_fused
    atoms = ethanol_atoms[1]
    fused = m.compute(atoms.positions, atoms.numbers, uncertainty=True)
    m.use_fused = False
    ref = m.compute(atoms.positions, atoms.numbers, uncertainty=True)
    from gmnn.graph import species_lookup
    shift = model.scale_shift.shift.numpy()[species_lookup(model.atomic_numbers)[atoms.numbers]]
    for key in ("atomic_energies", "forces", "forces_uncertainty"):
        a, b = np.asarray(fused[key]), np.asarray(ref[key])
        if key == "atomic_energies":
            a, b = a - shift, b - shift
        d = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert d <= RTOL[dtype], f"{key} ({dtype} file): {d:.2e} relative (> {RTOL[dtype]})"
    old = native.Model(str(FORMAT_1_MODEL))
    assert not old.has_fused_gradients and not old.use_fused
