"""Radial part of the Gaussian moment descriptor (spec section 1.1).

R_s(r) = f_c(r) * sum_k beta[Z_i, Z_j, s, k] * phi_k(r) / sqrt(K)

phi_k are normalised Gaussians centred on a linear grid from r_min to r_cutoff, f_c is the
cosine cutoff, beta are trainable coefficients that depend on the ordered element pair of the
edge. beta is what makes GM-NN multi-element without a network per pair.
"""
import math
from typing import Tuple

import torch
from torch import nn


class GaussianBasis(nn.Module):
    """phi_k(r) = c * exp(-beta (r - mu_k)^2), k = 0..K-1.

    Centres mu_k = linspace(r_min, r_cutoff, K, endpoint=False): spread from r_min towards the
    cutoff (the last centre sits one spacing before r_c, where the cutoff function already
    damps everything). Width beta = K^2 / r_c^2 and c = (2 beta / pi)^(1/4) as in GM-NN.
    """

    def __init__(self, n_basis: int, r_min: float, r_cutoff: float):  # defaults: model.ModelOptions
        super().__init__()
        if not 0.0 <= r_min < r_cutoff:
            raise ValueError(f"need 0 <= r_min < r_cutoff, got r_min={r_min}, r_cutoff={r_cutoff}")
        step = (r_cutoff - r_min) / n_basis
        self.register_buffer("centers", r_min + step * torch.arange(n_basis, dtype=torch.float64))
        self.width = float(n_basis**2 / r_cutoff**2)
        self.norm = float((2.0 * self.width / math.pi) ** 0.25)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """r: (E,) distances -> (E, K) basis values."""
        d = r.unsqueeze(-1) - self.centers
        return self.norm * torch.exp(-self.width * d * d)


def cosine_cutoff(r: torch.Tensor, r_cutoff: float) -> torch.Tensor:
    """f_c(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0 (zero value and slope at r_c)."""
    fc = 0.5 * (torch.cos(r * (math.pi / r_cutoff)) + 1.0)
    return torch.where(r < r_cutoff, fc, torch.zeros_like(fc))


class RadialFunctions(nn.Module):
    """Element-pair-dependent radial functions R_s(r_ij), s = 0..S-1.

    pair_coefficients has shape (n_elements, n_elements, S, K), indexed by the ordered pair
    (species of centre i, species of neighbour j); initialised uniformly in [-1, 1].
    """

    def __init__(self, n_elements: int, n_radial: int, n_basis: int, r_min: float, r_cutoff: float):
        super().__init__()
        self.n_elements = n_elements
        self.n_radial = n_radial
        self.n_basis = n_basis
        self.r_cutoff = float(r_cutoff)
        self.basis = GaussianBasis(n_basis, r_min, r_cutoff)
        self.pair_coefficients = nn.Parameter(
            torch.empty(n_elements, n_elements, n_radial, n_basis).uniform_(-1.0, 1.0))

    def forward(self, r: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor) -> torch.Tensor:
        """r, species_i, species_j: (E,) -> (E, S)."""
        phi = self.basis(r) * (cosine_cutoff(r, self.r_cutoff) / math.sqrt(self.n_basis)).unsqueeze(-1)
        # Evaluate all element pairs as one matmul, then pick each edge's pair: cheaper than
        # gathering an (S, K) coefficient block per edge when there are many edges.
        n_pairs = self.n_elements * self.n_elements
        coeffs = self.pair_coefficients.reshape(n_pairs * self.n_radial, self.n_basis)
        all_pairs = (phi @ coeffs.t()).reshape(-1, n_pairs, self.n_radial)
        pair = (species_i * self.n_elements + species_j).reshape(-1, 1, 1).expand(-1, 1, self.n_radial)
        return torch.gather(all_pairs, 1, pair).squeeze(1)

    @torch.jit.export
    def values_and_slopes(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """R_s(r) and dR_s/dr as (S, B, 2, M) for distances r (B, M) whose ordered element pair
        is `pair` = species_i * n_elements + species_j (B, M): forward's values (to rounding)
        with the analytic slope, components first (fused.py)."""
        n_basis, n_radial, b, m = self.n_basis, self.n_radial, r.shape[0], r.shape[1]
        d = r.unsqueeze(0) - self.basis.centers.to(r.dtype).reshape(n_basis, 1, 1)
        g = (self.basis.norm / math.sqrt(n_basis)) * torch.exp(-self.basis.width * d * d)
        # phi_k / sqrt(K), and phi_k' / (-2 width) / sqrt(K): (K, B, 2, M) as (K, B 2 M)
        basis = torch.stack([g, d * g], dim=2).reshape(n_basis, b * 2 * m)
        n_pairs = self.n_elements * self.n_elements
        coeffs = self.pair_coefficients.reshape(n_pairs, n_radial, n_basis)
        if n_pairs == 1:
            sums = coeffs[0] @ basis
        else:
            # each element pair's coefficients on its own slots only (not every pair on every
            # slot, then a gather: 9x the work and memory for three elements): a slot's two
            # columns in the (B, 2, M) layout are its value and its slope
            slot = torch.arange(b * m, dtype=torch.long, device=r.device)
            value_column = torch.div(slot, m, rounding_mode="floor") * (2 * m) + slot % m
            flat_pair = pair.reshape(b * m)
            sums = basis.new_zeros((n_radial, b * 2 * m))
            for p in range(n_pairs):
                columns = value_column[flat_pair == p]
                columns = torch.cat([columns, columns + m])
                sums.index_copy_(1, columns, coeffs[p] @ basis.index_select(1, columns))
        sums = sums.reshape(n_radial, b, 2, m)
        angle = r * (math.pi / self.r_cutoff)
        inside = r < self.r_cutoff
        fc = torch.where(inside, 0.5 * (torch.cos(angle) + 1.0), torch.zeros_like(r))
        fc_slope = torch.where(inside, (-0.5 * math.pi / self.r_cutoff) * torch.sin(angle), torch.zeros_like(r))
        values, slopes = sums[:, :, 0], sums[:, :, 1]
        return torch.stack([fc * values, fc_slope * values - (2.0 * self.basis.width) * fc * slopes], dim=2)
