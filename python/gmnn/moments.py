"""Geometric moments of an atom's neighbourhood (spec section 1.2).

Psi_s^(L) = sum_j R_s(r_ij) n_ij^(x L), L = 0..3, accumulated per centre atom as one
scatter-add of an (edges, S, 40) tensor: 40 = 1 + 3 + 9 + 27 Cartesian components.
"""
import torch

N_ANGULAR = 40  # 1 + 3 + 3^2 + 3^3 Cartesian components of orders 0..3


def angular_components(unit_vectors: torch.Tensor) -> torch.Tensor:
    """(E, 3) unit vectors -> (E, 40): [1, n_a, n_a n_b, n_a n_b n_c] flattened row-major."""
    n = unit_vectors
    nn_ = (n.unsqueeze(-1) * n.unsqueeze(-2)).reshape(-1, 9)
    nnn = (nn_.unsqueeze(-1) * n.unsqueeze(-2)).reshape(-1, 27)
    return torch.cat([torch.ones_like(n[:, :1]), n, nn_, nnn], dim=1)


def gaussian_moments(radial: torch.Tensor, unit_vectors: torch.Tensor,
                     centers: torch.Tensor, n_centers: int) -> torch.Tensor:
    """radial (E, S), unit_vectors (E, 3), centers (E,) -> moments (n_centers, S, 40)."""
    per_edge = radial.unsqueeze(-1) * angular_components(unit_vectors).unsqueeze(1)
    moments = torch.zeros((n_centers, radial.shape[1], per_edge.shape[2]), dtype=radial.dtype, device=radial.device)
    return moments.index_add_(0, centers, per_edge)


def split_moments(moments: torch.Tensor):
    """(N, S, 40) -> Psi^(0) (N,S), Psi^(1) (N,S,3), Psi^(2) (N,S,3,3), Psi^(3) (N,S,3,3,3)."""
    n, s = moments.shape[0], moments.shape[1]
    return (moments[:, :, 0],
            moments[:, :, 1:4],
            moments[:, :, 4:13].reshape(n, s, 3, 3),
            moments[:, :, 13:40].reshape(n, s, 3, 3, 3))
