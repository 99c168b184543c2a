"""The Gaussian moment descriptor: invariant contractions of the moments (spec section 1.3).

Eight families of full contractions; index combinations that are equal by symmetry are kept
once (s <= t, or s <= t <= u). With S radial channels the count is
S + 3 S(S+1)/2 + S(S+1)(S+2)/6 + 2 S^2(S+1)/2 + S^3, i.e. 360 features for S = 5.
"""
import itertools
from typing import List, Tuple

import torch
from torch import nn

from . import fused
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
        # the fused path (fused.py: forward_with_context, edge_gradients)
        plan = fused.contraction_plan(s)
        self.register_buffer("fused_features", plan["features"], persistent=False)
        self.register_buffer("pair_expand", plan["pair_expand"], persistent=False)
        self.register_buffer("sym3_expand", plan["sym3_expand"], persistent=False)
        self.register_buffer("sym2_expand", plan["sym2_expand"], persistent=False)

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

    # ---- the fused path (fused.py): features with what the analytic gradient needs ----------
    @torch.jit.export
    def forward_with_context(self, edge_vectors: torch.Tensor, centers: torch.Tensor, neighbors: torch.Tensor,
                             species: torch.Tensor, n_centers: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """forward's features (to rounding) and the context `edge_gradients` takes: the
        geometry and radial functions in slots per centre, components first, and the
        contractions' intermediates."""
        flat, m = fused.slot_layout(centers, n_centers)
        n_el = self.radial.n_elements
        # empty slots: a vector of length 2 r_c, beyond the cutoff (R = dR/dr = 0 there)
        vectors = edge_vectors.new_zeros((3, n_centers * m))
        vectors[0] = 2.0 * self.r_cutoff
        vectors = vectors.index_copy(1, flat, edge_vectors.t())
        pair = centers.new_zeros(n_centers * m)
        if n_el > 1:
            pair = pair.index_copy(0, flat, species[centers] * n_el + species[neighbors])
        r = torch.sqrt(vectors[0] * vectors[0] + vectors[1] * vectors[1] + vectors[2] * vectors[2])
        inv_r = 1.0 / r
        unit = vectors * inv_r
        radial = self.radial.values_and_slopes(r.reshape(n_centers, m), pair.reshape(n_centers, m))
        angular = fused.angular_rows(unit)
        unique = torch.bmm(radial[:, :, 0].permute(1, 0, 2), angular.reshape(20, n_centers, m).permute(1, 2, 0))
        moments = unique.index_select(2, self.expand)
        parts = fused.contraction_intermediates(moments)
        features = fused.contract_full(moments, parts, self.fused_features)
        return features, [radial, angular.reshape(20, n_centers, m), unit.reshape(3, n_centers, m),
                          inv_r.reshape(n_centers, m), flat] + parts

    @torch.jit.export
    def edge_gradients(self, grad_features: torch.Tensor, context: List[torch.Tensor]) -> torch.Tensor:
        """dE/d(edge_vectors) (E, 3) from dE/dG (n_centers, n_features) and forward_with_context's context."""
        grad_moments = fused.contraction_backward(grad_features, context[5:], self.pair_expand, self.sym3_expand,
                                                  self.sym2_expand)
        n, s = grad_moments.shape[0], grad_moments.shape[1]
        grad_unique = torch.zeros((n, s, 20), dtype=grad_moments.dtype, device=grad_moments.device)
        grad_unique = grad_unique.index_add(2, self.expand, grad_moments)
        return fused.edge_gradients(grad_unique, context[0], context[1], context[2], context[3], context[4])
