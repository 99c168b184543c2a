"""Energies and their gradient w.r.t. the edge vectors without autograd (inference only).

The descriptor's backward, which autograd runs over dozens of small tensors (BENCHMARKS.md, "One
LAMMPS step, stage by stage"), written out: the network's input gradient layer by layer
(model.AtomicNetwork.forward_and_input_gradient), the contractions' gradient as three batched
matmuls (`contraction_backward`), and the moments' and radial functions' gradient as one batched
matmul over the centres plus a few element-wise passes over the edges (`edge_gradients`), reusing
what the forward computed. Everything is plain TorchScript: the exported model file carries it as
the method `forward_gradients` (docs/model_file.md), with no custom operator or extra library.
pair_style gmnn with it: 1.38x (float32) and 1.22x (float64) faster per MD step on dense carbon,
1.27x and 1.15x on liquid ethanol, the descriptor's share of the step halved
(benchmarks/results/fused_path.md).

Training differentiates the forces again (force training needs the gradient of the gradient), so
it keeps the autograd path (GMNN.forward + torch.autograd.grad), which stays the reference: the
tests compare both (tests/test_fused.py).

Layout: the edges are laid out per centre in slots (N, M), M = most neighbours of any centre, as
in moments.gaussian_moments; here the geometry itself goes into the slots (empty slots hold a
vector of length 2 r_c, whose radial functions and their slopes are exactly 0), so the radial
functions, angular components and the backward all run on dense (N, M, .) tensors, and only the
edge vectors in and their gradient out are scattered and gathered.
"""
from typing import Dict, List, Tuple

import torch

from .moments import slots_within_centers


# ---- the contractions: which full-array entry each feature is, which feature weights which ----

def _combos(s: int):
    pair = [(a, b) for a in range(s) for b in range(s) if a <= b]
    sym3 = [(a, b, c) for a in range(s) for b in range(s) for c in range(s) if a <= b <= c]
    sym2 = [(a, b, c) for a in range(s) for b in range(s) for c in range(s) if a <= b]
    return pair, sym3, sym2


def contraction_plan(s: int) -> Dict[str, torch.Tensor]:
    """Index tables and matrices for `contract_full` / `contraction_backward`, S = s channels.

    `contract_full` computes every contraction for every index combination into one array per
    atom: [P0 (S) | f1, f2, f3 (S^2 each, [s,t]) | c5 [s,t,u] | c6 [s,t,u] | c7 [s,t,u] |
    c8 [t,s,u]] (S^3 each); `features` (F,) picks the features of descriptor.contract, in its
    order. The features' order (descriptor.contract): P0 (S), the three pair families (s <= t),
    c5 (s <= t <= u), c6 and c7 (s <= t, any u), c8 (all).

    The backward weights the intermediates with dE/dG scattered to all index combinations and
    summed over the slots a contraction is symmetric in: `pair_expand` (pairs, S^2) gives
    Q[x,p] = W[x,p] + W[p,x]; `sym3_expand` (c5, S^3) gives W'[x,(p,q)] = W[x,p,q] + W[p,x,q] +
    W[p,q,x]; `sym2_expand` (c6 or c7, 2 S^3) gives [W[x,p,u] + W[p,x,u] over (x,(p,u)) |
    W[s,t,x] over (x,(s,t))], W being zero where a combination is not kept."""
    pair, sym3, sym2 = _combos(s)
    allt = [(a, b, c) for a in range(s) for b in range(s) for c in range(s)]
    s2, s3 = s * s, s * s * s
    features: List[int] = list(range(s))
    features += [s + a * s + b for a, b in pair]
    features += [s + s2 + a * s + b for a, b in pair]
    features += [s + 2 * s2 + a * s + b for a, b in pair]
    base = s + 3 * s2
    features += [base + a * s2 + b * s + c for a, b, c in sym3]
    features += [base + s3 + a * s2 + b * s + c for a, b, c in sym2]
    features += [base + 2 * s3 + a * s2 + b * s + c for a, b, c in sym2]
    features += [base + 3 * s3 + b * s2 + a * s + c for a, b, c in allt]  # c8 is computed as [t, s, u]

    row2 = {c: k for k, c in enumerate(pair)}
    pair_expand = torch.zeros(len(pair), s2, dtype=torch.float64)
    for x in range(s):
        for p in range(s):
            for c in ((x, p), (p, x)):
                if c in row2:
                    pair_expand[row2[c], x * s + p] += 1.0
    row3 = {c: k for k, c in enumerate(sym3)}
    sym3_expand = torch.zeros(len(sym3), s3, dtype=torch.float64)
    for x, p, q in allt:
        for c in ((x, p, q), (p, x, q), (p, q, x)):
            if c in row3:
                sym3_expand[row3[c], x * s2 + p * s + q] += 1.0
    rows = {c: k for k, c in enumerate(sym2)}
    sym2_expand = torch.zeros(len(sym2), 2 * s3, dtype=torch.float64)
    for x, p, u in allt:
        for c in ((x, p, u), (p, x, u)):
            if c in rows:
                sym2_expand[rows[c], x * s2 + p * s + u] += 1.0
        if (p, u, x) in rows:  # second half: (x, (s, t)) <- W[s, t, x], here s = p, t = u
            sym2_expand[rows[(p, u, x)], s3 + x * s2 + p * s + u] += 1.0
    return {"features": torch.tensor(features, dtype=torch.long), "pair_expand": pair_expand,
            "sym3_expand": sym3_expand, "sym2_expand": sym2_expand}


def contraction_intermediates(moments: torch.Tensor) -> List[torch.Tensor]:
    """(N, S, 40) moments -> [P1 (N,S,3), P2 (N,S,9), P3 (N,S,27), X, Y, Jt, Z, K, V, O11, O21]:
    X[p,q] = P2_p P2_q (9), Y[p,u] = P2_u P1_p (3), Jt[t,s]_c = sum_ab P3_s,abc P2_t,ab,
    Z[s,t]_cd = sum_ab P3_s,abc P3_t,abd, K[s,u]_ab = sum_c P3_s,abc P1_u,c,
    V[p,u]_abc = sum_d P3_p,abd P2_u,cd, O11[s,t] = P1_s (x) P1_t, O21[t,u] = P2_t (x) P1_u,
    each (N, S^2, dim), pairs row-major."""
    n, s = moments.shape[0], moments.shape[1]
    p1 = moments[:, :, 1:4]
    p2f = moments[:, :, 4:13]
    p3f = moments[:, :, 13:40]
    p2 = p2f.reshape(n, s, 3, 3)
    p3 = p3f.reshape(n, s, 3, 3, 3)
    p2_b_ua = p2.permute(0, 3, 1, 2).reshape(n, 3, s * 3)          # [d or b, (u, a)]
    p3_ab_sc = p3.permute(0, 2, 3, 1, 4).reshape(n, 9, s * 3)      # [(a b), (s, c)]
    x = torch.bmm(p2.reshape(n, s * 3, 3), p2.permute(0, 2, 1, 3).reshape(n, 3, s * 3))
    x = x.reshape(n, s, 3, s, 3).permute(0, 1, 3, 2, 4).reshape(n, s * s, 9)
    y = torch.bmm(p1, p2_b_ua).reshape(n, s * s, 3)
    jt = torch.bmm(p2f, p3_ab_sc).reshape(n, s * s, 3)
    z = torch.bmm(p3_ab_sc.transpose(1, 2), p3_ab_sc)
    z = z.reshape(n, s, 3, s, 3).permute(0, 1, 3, 2, 4).reshape(n, s * s, 9)
    k = torch.bmm(p3f.reshape(n, s * 9, 3), p1.transpose(1, 2))
    k = k.reshape(n, s, 9, s).permute(0, 1, 3, 2).reshape(n, s * s, 9)
    v = torch.bmm(p3f.reshape(n, s * 9, 3), p2_b_ua)
    v = v.reshape(n, s, 9, s, 3).permute(0, 1, 3, 2, 4).reshape(n, s * s, 27)
    o11 = (p1.unsqueeze(2).unsqueeze(4) * p1.unsqueeze(1).unsqueeze(3)).reshape(n, s * s, 9)
    o21 = (p2f.unsqueeze(2).unsqueeze(4) * p1.unsqueeze(1).unsqueeze(3)).reshape(n, s * s, 27)
    return [p1, p2f, p3f, x, y, jt, z, k, v, o11, o21]


def contract_full(moments: torch.Tensor, parts: List[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """The descriptor's features (N, F) from the moments and `contraction_intermediates`."""
    n, s = moments.shape[0], moments.shape[1]
    s2, s3 = s * s, s * s * s  # explicit sizes: reshape(n, -1) fails for n = 0 centres
    p1, p2f, p3f, x, y, jt, z = parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]
    full = torch.cat([moments[:, :, 0],
                      torch.bmm(p1, p1.transpose(1, 2)).reshape(n, s2),
                      torch.bmm(p2f, p2f.transpose(1, 2)).reshape(n, s2),
                      torch.bmm(p3f, p3f.transpose(1, 2)).reshape(n, s2),
                      torch.bmm(x, p2f.transpose(1, 2)).reshape(n, s3),    # c5 [s,t,u]
                      torch.bmm(p1, y.transpose(1, 2)).reshape(n, s3),     # c6 [s,(t,u)]
                      torch.bmm(z, p2f.transpose(1, 2)).reshape(n, s3),    # c7 [s,t,u]
                      torch.bmm(jt, p1.transpose(1, 2)).reshape(n, s3)],   # c8 [t,s,u]
                     dim=1)
    return full.index_select(1, features)


def contraction_backward(grad_features: torch.Tensor, parts: List[torch.Tensor], pair_expand: torch.Tensor,
                         sym3_expand: torch.Tensor, sym2_expand: torch.Tensor) -> torch.Tensor:
    """dE/dG (N, F) -> dE/d(moments) (N, S, 40), the 40 components taken as independent:
    dP_L,x = sum_j weight[x, j] T_L[j] for the intermediates T_L of each order L, one batched
    matmul per order (see contraction_plan for the weights)."""
    n, s = grad_features.shape[0], parts[0].shape[1]
    p1, p2f, p3f, x, y, jt, z, k, v, o11, o21 = parts
    n_pair, n3, n2 = pair_expand.shape[0], sym3_expand.shape[0], sym2_expand.shape[0]
    s2, s3 = s * s, s * s * s
    start = s
    q = []
    for _ in range(3):
        q.append((grad_features[:, start:start + n_pair] @ pair_expand).reshape(n, s, s))
        start += n_pair
    w5 = (grad_features[:, start:start + n3] @ sym3_expand).reshape(n, s, s2)
    start += n3
    w6 = (grad_features[:, start:start + n2] @ sym2_expand).reshape(n, 2, s, s2)
    start += n2
    w7 = (grad_features[:, start:start + n2] @ sym2_expand).reshape(n, 2, s, s2)
    start += n2
    w8 = grad_features[:, start:start + s3].reshape(n, s, s, s)  # [s, t, u]
    left1 = torch.cat([q[0], w6[:, 0], w8.permute(0, 3, 2, 1).reshape(n, s, s2)], dim=2)
    left2 = torch.cat([q[1], w5, w6[:, 1], w7[:, 1], w8.permute(0, 2, 1, 3).reshape(n, s, s2)], dim=2)
    left3 = torch.cat([q[2], w7[:, 0], w8.reshape(n, s, s2)], dim=2)
    d1 = torch.bmm(left1, torch.cat([p1, y, jt], dim=1))
    d2 = torch.bmm(left2, torch.cat([p2f, x, o11, z, k], dim=1))
    d3 = torch.bmm(left3, torch.cat([p3f, v, o21], dim=1))
    return torch.cat([grad_features[:, :s].unsqueeze(2), d1, d2, d3], dim=2)


# ---- edges: geometry in slots, radial functions with their slopes, and the way back ------------

def slot_layout(centers: torch.Tensor, n_centers: int) -> Tuple[torch.Tensor, int]:
    """(flat slot of each edge in an (n_centers * M) layout, M)."""
    slots = slots_within_centers(centers, n_centers)
    n_slots = int(slots.max()) + 1 if slots.shape[0] > 0 else 1
    return centers * n_slots + slots, n_slots


def angular_rows(u: torch.Tensor) -> torch.Tensor:
    """unique_angular_components with components first: (3, ...) -> (20, ...)."""
    x, y, z = u[0:1], u[1:2], u[2:3]
    pairs = torch.cat([x * u, y * u[1:], z * z], dim=0)                     # xx xy xz yy yz zz
    triples = torch.cat([x * pairs, y * pairs[3:], z * pairs[5:]], dim=0)  # xxx ... zzz
    return torch.cat([torch.ones_like(x), u, pairs, triples], dim=0)


def edge_gradients(grad_unique: torch.Tensor, radial: torch.Tensor, angular: torch.Tensor, unit: torch.Tensor,
                   inv_r: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """dE/d(edge_vectors) (E, 3) from dE/dU (N, S, 20) of the unique moments U = sum_edges R (x) A.

    radial: R_s and dR_s/dr of every slot, (S, N, 2, M); angular: A (20, N, M); unit, inv_r: u
    (3, N, M) and 1/r (N, M); flat: each edge's slot (E,). With G_c = sum_s dU[s,c] R_s and G'_c
    = sum_s dU[s,c] R'_s (one batched matmul), the gradient is u (sum_c G'_c A_c - u.du / r) +
    du / r, du = sum_c G_c dA_c/du (the angular derivative written out)."""
    s, n, m = radial.shape[0], radial.shape[1], radial.shape[3]
    both = torch.bmm(grad_unique.transpose(1, 2), radial.reshape(s, n, 2 * m).permute(1, 0, 2))  # (N, 20, 2M)
    g = both[:, :, :m]
    x, y, z = unit[0], unit[1], unit[2]
    a = angular
    du_x = g[:, 1] + x * (2.0 * g[:, 4]) + y * g[:, 5] + z * g[:, 6] + a[4] * (3.0 * g[:, 10]) \
        + a[5] * (2.0 * g[:, 11]) + a[6] * (2.0 * g[:, 12]) + a[7] * g[:, 13] + a[8] * g[:, 14] + a[9] * g[:, 15]
    du_y = g[:, 2] + x * g[:, 5] + y * (2.0 * g[:, 7]) + z * g[:, 8] + a[4] * g[:, 11] + a[5] * (2.0 * g[:, 13]) \
        + a[6] * g[:, 14] + a[7] * (3.0 * g[:, 16]) + a[8] * (2.0 * g[:, 17]) + a[9] * g[:, 18]
    du_z = g[:, 3] + x * g[:, 6] + y * g[:, 8] + z * (2.0 * g[:, 9]) + a[4] * g[:, 12] + a[5] * g[:, 14] \
        + a[6] * (2.0 * g[:, 15]) + a[7] * g[:, 17] + a[8] * (2.0 * g[:, 18]) + a[9] * (3.0 * g[:, 19])
    radial_part = (both[:, :, m:] * a.permute(1, 0, 2)).sum(1) - (du_x * x + du_y * y + du_z * z) * inv_r
    grad = torch.stack([x * radial_part + du_x * inv_r, y * radial_part + du_y * inv_r,
                        z * radial_part + du_z * inv_r], dim=0)
    return grad.reshape(3, n * m).index_select(1, flat).t()
