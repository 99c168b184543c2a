"""Neighbour lists: all directed pairs (i, j, image) with |x_j + S.cell - x_i| < cutoff.

Built on vesin (the cell-list neighbour list of the metatensor/apax ecosystem, C++, ~20x faster
than ASE's) when it is installed, else on ASE's `primitive_neighbor_list`; both are O(N) and
handle periodic cells smaller than the cutoff (several images of the same atom), slabs and free
molecules, and tests hold both to a brute-force reference. Edges follow the convention of
docs/model_file.md: vector = x_j - x_i (+ periodic shift).
"""
from dataclasses import dataclass

import numpy as np
from ase.neighborlist import primitive_neighbor_list


@dataclass
class NeighborList:
    centers: np.ndarray    # (E,) int64, atom i, sorted (the calculator's atom blocks rely on it)
    neighbors: np.ndarray  # (E,) int64, atom j
    vectors: np.ndarray    # (E, 3) float64, x_j - x_i + shift (Angstrom)


def neighbor_list(positions, cutoff: float, cell=None, pbc=(False, False, False), backend: str = "auto") -> NeighborList:
    """`backend`: "auto" (vesin if installed, else ASE), "vesin" or "ase"."""
    positions = np.asarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return NeighborList(empty, empty.copy(), np.zeros((0, 3)))
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise ValueError(f"non-finite positions for atoms {bad[:10].tolist()}")
    if pbc.any() and abs(np.linalg.det(cell[pbc][:, pbc] if pbc.all() else cell)) < 1e-12 and pbc.all():
        raise ValueError("periodic structure with a degenerate (zero-volume) cell")
    # ASE needs a complete cell; directions that are not periodic only bin the atoms,
    # so an orthogonal box around the atoms serves there.
    cell = _complete_cell(cell, positions, pbc)
    i, j, d = _pairs(positions, float(cutoff), cell, pbc, backend)
    coincident = np.flatnonzero(np.einsum("ij,ij->i", d, d) < 1e-20)
    if len(coincident):
        e = coincident[0]
        raise ValueError(f"atoms {i[e]} and {j[e]} are at the same position (coincident atoms): "
                         f"the descriptor is undefined there")
    if np.any(np.diff(i) < 0):  # ASE sorts by centre today; do not depend on it silently
        order = np.argsort(i, kind="stable")
        i, j, d = i[order], j[order], d[order]
    return NeighborList(i.astype(np.int64), j.astype(np.int64), d)


def _pairs(positions, cutoff, cell, pbc, backend: str = "auto"):
    """(i, j, x_j - x_i + shift) for all pairs closer than the cutoff, without self-pairs."""
    if backend in ("auto", "vesin"):
        try:
            from vesin import NeighborList as Vesin
        except ImportError:
            if backend == "vesin":
                raise
        else:
            # one thread: gmnn runs next to a torch thread on each core (see README "threads")
            i, j, d = Vesin(cutoff=cutoff, full_list=True, sorted=True, n_threads=1).compute(
                positions, cell, pbc.tolist(), quantities="ijD")
            return i, j, d
    return primitive_neighbor_list("ijD", pbc, cell, positions, cutoff, self_interaction=False,
                                   use_scaled_positions=False)


def _complete_cell(cell: np.ndarray, positions: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    out = cell.copy()
    extent = positions.max(axis=0) - positions.min(axis=0) + 1.0
    for k in range(3):
        if not pbc[k] and np.linalg.norm(out[k]) < 1e-12:
            out[k] = 0.0
            out[k, k] = extent[k]
    if abs(np.linalg.det(out)) < 1e-12:
        # a non-periodic direction collinear with the others: fall back to an orthogonal box
        for k in range(3):
            if not pbc[k]:
                out[k] = 0.0
                out[k, k] = extent[k]
    return out
