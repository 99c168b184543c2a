"""Geometric moments of an atom's neighbourhood (spec section 1.2).

Psi_s^(L) = sum_j R_s(r_ij) n_ij^(x L), L = 0..3, per centre atom i.

The Cartesian tensors n^(x L) are symmetric, so per edge only their 20 distinct components are
formed (1 + 3 + 6 + 10 instead of 1 + 3 + 9 + 27); the full 40-component moments are expanded
per atom afterwards, where it is cheap. The sum over neighbours is one batched matmul:
edges are laid out per centre in slots (N, M) padded with zeros (M = most neighbours of any
centre) and Psi_i = R_i^T A_i, (S x M) @ (M x 20). This never materialises an (edges, S, 40)
tensor: that tensor and its backward were 70 % of the model's time (profile in BENCHMARKS.md).
"""
import torch


def _unique_monomials():
    """Distinct monomials (sorted index tuples) in the order unique_angular_components makes them."""
    pairs = [(a, b) for a in range(3) for b in range(a, 3)]
    triples = [(0,) + p for p in pairs] + [(1,) + p for p in pairs[3:]] + [(2, 2, 2)]
    return [()] + [(a,) for a in range(3)] + pairs + triples


def _expansion_index():
    """For each of the 40 row-major Cartesian components, its column among the 20 unique ones."""
    column = {m: k for k, m in enumerate(_unique_monomials())}
    full = [()] + [(a,) for a in range(3)]
    full += [tuple(sorted((a, b))) for a in range(3) for b in range(3)]
    full += [tuple(sorted((a, b, c))) for a in range(3) for b in range(3) for c in range(3)]
    return tuple(column[m] for m in full)


EXPAND_TO_CARTESIAN = _expansion_index()


def unique_angular_components(unit_vectors: torch.Tensor) -> torch.Tensor:
    """(E, 3) unit vectors -> (E, 20): 1, n_a, n_a n_b (a <= b), n_a n_b n_c (a <= b <= c)."""
    n = unit_vectors
    x, y, z = n[:, 0:1], n[:, 1:2], n[:, 2:3]
    pairs = torch.cat([x * n, y * n[:, 1:], z * z], dim=1)                     # xx xy xz yy yz zz
    triples = torch.cat([x * pairs, y * pairs[:, 3:], z * pairs[:, 5:]], dim=1)  # xxx ... zzz
    return torch.cat([torch.ones_like(x), n, pairs, triples], dim=1)


def angular_components(unit_vectors: torch.Tensor) -> torch.Tensor:
    """(E, 3) unit vectors -> (E, 40): [1, n_a, n_a n_b, n_a n_b n_c] flattened row-major."""
    return unique_angular_components(unit_vectors).index_select(1, expansion_index().to(unit_vectors.device))


def slots_within_centers(centers: torch.Tensor, n_centers: int) -> torch.Tensor:
    """Position of each edge among its centre's edges, 0..count-1 (any edge order)."""
    n_edges = centers.shape[0]
    counts = torch.bincount(centers, minlength=n_centers)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n_edges, dtype=torch.long, device=centers.device)
    if n_edges > 1 and not bool((centers[1:] >= centers[:-1]).all()):
        order = torch.argsort(centers, stable=True)
        slots = torch.empty_like(rank)
        slots[order] = rank - first[centers[order]]
        return slots
    return rank - first[centers]


def expansion_index() -> torch.Tensor:
    """EXPAND_TO_CARTESIAN as a tensor (TorchScript functions take it as an argument)."""
    return torch.tensor(EXPAND_TO_CARTESIAN, dtype=torch.long)


def gaussian_moments(radial: torch.Tensor, unit_vectors: torch.Tensor, centers: torch.Tensor,
                     n_centers: int, expand: torch.Tensor) -> torch.Tensor:
    """radial (E, S), unit_vectors (E, 3), centers (E,) -> moments (n_centers, S, 40);
    `expand` = expansion_index()."""
    n_radial = radial.shape[1]
    slots = slots_within_centers(centers, n_centers)
    n_slots = int(slots.max()) + 1 if slots.shape[0] > 0 else 1
    radial_slots = radial.new_zeros((n_centers, n_slots, n_radial))
    radial_slots[centers, slots] = radial
    angular = unique_angular_components(unit_vectors)
    angular_slots = angular.new_zeros((n_centers, n_slots, angular.shape[1]))
    angular_slots[centers, slots] = angular
    unique = torch.bmm(radial_slots.transpose(1, 2), angular_slots)  # (N, S, 20)
    return unique.index_select(2, expand)


def split_moments(moments: torch.Tensor):
    """(N, S, 40) -> Psi^(0) (N,S), Psi^(1) (N,S,3), Psi^(2) (N,S,3,3), Psi^(3) (N,S,3,3,3)."""
    n, s = moments.shape[0], moments.shape[1]
    return (moments[:, :, 0],
            moments[:, :, 1:4],
            moments[:, :, 4:13].reshape(n, s, 3, 3),
            moments[:, :, 13:40].reshape(n, s, 3, 3, 3))
