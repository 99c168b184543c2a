"""The Gaussian moment descriptor: invariant contractions of the moments (spec section 1.3).

Eight families of full contractions; index combinations that are equal by symmetry are kept
once (s <= t, or s <= t <= u). With S radial channels the count is
S + 3 S(S+1)/2 + S(S+1)(S+2)/6 + 2 S^2(S+1)/2 + S^3, i.e. 360 features for S = 5.
"""
import itertools
from typing import List

import torch
from torch import nn

from .moments import expansion_index, gaussian_moments, split_moments
from .radial import RadialFunctions


def _flat_indices(n: int, order: int, symmetric_prefix: int) -> List[int]:
    """Row-major flat indices into an n^order tensor, with the first `symmetric_prefix`
    indices non-decreasing (the ones a contraction is symmetric in) and the rest free."""
    out = []
    for idx in itertools.product(range(n), repeat=order):
        head = idx[:symmetric_prefix]
        if all(head[k] <= head[k + 1] for k in range(len(head) - 1)):
            out.append(sum(v * n ** (order - 1 - k) for k, v in enumerate(idx)))
    return out


def n_features(n_radial: int) -> int:
    s = n_radial
    return s + 3 * s * (s + 1) // 2 + s * (s + 1) * (s + 2) // 6 + s * s * (s + 1) + s**3


class GaussianMomentDescriptor(nn.Module):
    """Edges -> per-atom invariant features G_i (n_centers, n_features(S)).

    The moments are not normalised by the neighbour count: with normalised Gaussians and
    coefficients in [-1, 1] the features stay O(1) for molecules (8 neighbours) and dense
    carbon (80 neighbours within 5 A), and the NTK input layer divides by sqrt(n_features).
    """

    def __init__(self, n_elements: int, n_radial: int, n_basis: int, r_min: float, r_cutoff: float):
        super().__init__()
        self.radial = RadialFunctions(n_elements, n_radial, n_basis, r_min, r_cutoff)
        self.n_radial = n_radial
        self.r_cutoff = float(r_cutoff)
        self.n_features = n_features(n_radial)
        s = n_radial
        index = lambda order, sym: torch.tensor(_flat_indices(s, order, sym), dtype=torch.long)
        self.register_buffer("expand", expansion_index(), persistent=False)        # 20 -> 40 components
        self.register_buffer("pairs_sym", index(2, 2), persistent=False)           # s <= t
        self.register_buffer("triples_sym", index(3, 3), persistent=False)         # s <= t <= u
        self.register_buffer("triples_pair_sym", index(3, 2), persistent=False)    # s <= t, any u

    def forward(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                species: torch.Tensor, n_centers: int) -> torch.Tensor:
        r = torch.linalg.norm(edge_vectors, dim=1)
        unit = edge_vectors / r.unsqueeze(-1)
        radial = self.radial(r, species[centers], species[neighbors])
        moments = gaussian_moments(radial, unit, centers, n_centers, self.expand)
        return self.contract(moments)

    def contract(self, moments: torch.Tensor) -> torch.Tensor:
        p0, p1, p2, p3 = split_moments(moments)
        n, s = p0.shape[0], p0.shape[1]
        pairs = [torch.einsum("nsa,nta->nst", p1, p1),
                 torch.einsum("nsab,ntab->nst", p2, p2),
                 torch.einsum("nsabc,ntabc->nst", p3, p3)]
        p22 = torch.einsum("nsab,ntac->nstbc", p2, p2)
        c5 = torch.einsum("nstbc,nubc->nstu", p22, p2)
        c6 = torch.einsum("nsub,ntb->nstu", torch.einsum("nsa,nuab->nsub", p1, p2), p1)
        c7 = torch.einsum("nstcd,nucd->nstu", torch.einsum("nsabc,ntabd->nstcd", p3, p3), p2)
        c8 = torch.einsum("nstc,nuc->nstu", torch.einsum("nsabc,ntab->nstc", p3, p2), p1)
        features = [p0]
        for c in pairs:
            features.append(c.reshape(n, s * s)[:, self.pairs_sym])
        features.append(c5.reshape(n, s * s * s)[:, self.triples_sym])
        features.append(c6.reshape(n, s * s * s)[:, self.triples_pair_sym])
        features.append(c7.reshape(n, s * s * s)[:, self.triples_pair_sym])
        features.append(c8.reshape(n, s * s * s))
        return torch.cat(features, dim=1)
