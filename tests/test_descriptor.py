"""The Gaussian-moment descriptor: size and invariances (spec 1.3)."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gmnn_testing import small_model
from gmnn.descriptor import n_features
from gmnn.graph import collate, structure_graph


def features(model, structure):
    g = structure_graph(structure, model.atomic_numbers, model.cutoff)
    b = collate([g])
    return model.descriptor(b.edge_vectors, b.centers, b.neighbors, b.species, g.n_atoms)


def test_feature_count_is_360_for_five_radial_channels():
    assert n_features(5) == 360
    assert n_features(7) == 7 + 3 * 28 + 84 + 2 * 7 * 28 + 343
    model = small_model()
    assert model.descriptor.n_features == 360


def test_descriptor_invariant_to_rotation_translation_permutation(ethanol_structures):
    model = small_model()
    s = ethanol_structures[0]
    ref = features(model, s).detach()
    rng = np.random.default_rng(1)
    rotated = type(s)(**{**s.__dict__})
    rot = Rotation.random(random_state=3).as_matrix()
    rotated.positions = s.positions @ rot.T + rng.normal(size=3) * 5.0
    out = features(model, rotated).detach()
    assert torch.allclose(out, ref, atol=1e-10, rtol=1e-9), (out - ref).abs().max()
    perm = rng.permutation(s.n_atoms)
    permuted = type(s)(**{**s.__dict__})
    permuted.numbers, permuted.positions = s.numbers[perm], s.positions[perm]
    out = features(model, permuted).detach()
    assert torch.allclose(out, ref[perm], atol=1e-10, rtol=1e-9)


def test_descriptor_is_not_trivially_constant(ethanol_structures):
    """Different geometries and different atoms must give different features."""
    model = small_model()
    a = features(model, ethanol_structures[0]).detach()
    b = features(model, ethanol_structures[1]).detach()
    assert (a - b).abs().max() > 1e-3
    assert (a[0] - a[6]).abs().max() > 1e-3  # an H and a C atom
    assert torch.all(torch.isfinite(a))


def test_each_contraction_family_depends_on_geometry():
    """All eight families respond to a deformation (none is identically zero)."""
    from gmnn.data import Structure
    model = small_model(elements=("C",))
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(6, 3)) * 1.2
    s1 = Structure(np.full(6, 6), pos)
    s2 = Structure(np.full(6, 6), pos + rng.normal(size=(6, 3)) * 0.1)
    f1, f2 = features(model, s1).detach(), features(model, s2).detach()
    sizes = [5, 15, 15, 15, 35, 75, 75, 125]
    start = 0
    for k, size in enumerate(sizes):
        block1 = f1[:, start:start + size]
        assert block1.abs().max() > 1e-6, f"family {k + 1} vanishes"
        assert (block1 - f2[:, start:start + size]).abs().max() > 1e-6, f"family {k + 1} is constant"
        start += size


@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted_edges", "shuffled_edges"])
def test_moments_equal_the_defining_sum_over_neighbours(shuffle):
    """Psi_s^(L)[i] = sum_j R_s(r_ij) n_ij^(x L), written out edge by edge with full Cartesian
    tensors, equals the padded batched-matmul implementation over 20 unique components; edges
    in any order, and centres without neighbours (atoms 2 and 5) get zero moments."""
    from gmnn.moments import angular_components, expansion_index, gaussian_moments
    gen = torch.Generator().manual_seed(5)
    centers = torch.tensor([0, 0, 0, 1, 3, 3, 3, 3, 4, 6], dtype=torch.long)
    if shuffle:
        centers = centers[torch.randperm(len(centers), generator=gen)]
    vectors = torch.randn(len(centers), 3, generator=gen, dtype=torch.float64)
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    radial = torch.randn(len(centers), 5, generator=gen, dtype=torch.float64)
    moments = gaussian_moments(radial, unit, centers, 7, expansion_index())
    expected = torch.zeros(7, 5, 40, dtype=torch.float64)
    for e, i in enumerate(centers.tolist()):
        n = unit[e]
        cartesian = torch.cat([torch.ones(1, dtype=torch.float64), n, torch.outer(n, n).flatten(),
                               torch.einsum("a,b,c->abc", n, n, n).flatten()])
        expected[i] += radial[e].unsqueeze(-1) * cartesian
    torch.testing.assert_close(moments, expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(angular_components(unit)[:, 13:],
                               torch.einsum("ea,eb,ec->eabc", unit, unit, unit).reshape(-1, 27))
    assert moments[[2, 5]].abs().max() == 0
