"""Neighbour lists: all directed pairs (i, j, image) with |x_j + S.cell - x_i| < cutoff.

Built on vesin (the cell-list neighbour list of the metatensor/apax ecosystem, C++, ~20x faster
than ASE's) when it is installed, else on ASE's `primitive_neighbor_list`; both are O(N) and
handle periodic cells smaller than the cutoff (several images of the same atom), slabs and free
molecules, and tests hold both to a brute-force reference. Edges follow the convention of
docs/model_file.md: vector = x_j - x_i (+ periodic shift).
"""
from dataclasses import dataclass
from typing import Optional

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
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"the cutoff must be a finite positive number, got {cutoff}")
    problem = cell_problem(cell, pbc)  # vesin dies of SIGFPE on some of these, ASE gives garbage
    if problem:
        raise ValueError(problem)
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


ZERO_LENGTH = 1e-9  # Angstrom: a cell vector shorter than this is no cell vector
MIN_THICKNESS = 0.1  # Angstrom: thinner periodic cells are degenerate (an atom on its own images)


def cell_problem(cell, pbc) -> Optional[str]:
    """None if `cell` describes the periodic directions `pbc`, else what is wrong with it.

    Each periodic direction needs a non-zero cell vector, and the periodic vectors must be
    linearly independent (a lattice, not a line or a plane of them) and span a cell at least
    MIN_THICKNESS thick between opposite faces (else the neighbour list needs ~cutoff/thickness
    images per direction: vesin dies of SIGFPE at zero thickness, ASE hangs near it). The
    vectors of non-periodic directions are not used: zero, or parallel to a periodic one, they
    are fine."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not np.all(np.isfinite(cell)):
        return "cell vectors contain NaN or inf"
    periodic = np.flatnonzero(pbc)
    if len(periodic) == 0:
        return None
    flags = "pbc " + " ".join("T" if p else "F" for p in pbc)
    zero = [_VECTOR_NAMES[k] for k in periodic if np.linalg.norm(cell[k]) < ZERO_LENGTH]
    if zero:
        one = len(zero) == 1
        return (f"{flags} is periodic along cell vector{'' if one else 's'} {' and '.join(zero)}, which "
                f"{'is' if one else 'are'} zero (no Lattice given?): give the cell, or make "
                f"{'that direction' if one else 'those directions'} non-periodic")
    singular = np.linalg.svd(cell[periodic], compute_uv=False)
    if singular[-1] <= 1e-8 * singular[0]:
        names = " and ".join(_VECTOR_NAMES[k] for k in periodic)
        return (f"{flags}: the periodic cell vectors {names} are linearly dependent (a degenerate cell): "
                f"{np.round(cell[periodic], 6).tolist()}")
    thickness = 1.0 / np.linalg.norm(np.linalg.pinv(cell[periodic]), axis=0)  # between opposite faces
    if thickness.min() < MIN_THICKNESS:
        k = periodic[int(np.argmin(thickness))]
        return (f"{flags}: the cell is {thickness.min():.3g} A thick along cell vector {_VECTOR_NAMES[k]}, "
                f"thinner than {MIN_THICKNESS} A (a degenerate cell): {np.round(cell[periodic], 6).tolist()}")
    return None


_VECTOR_NAMES = ("a", "b", "c")


def _complete_cell(cell: np.ndarray, positions: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """A full-rank cell for the neighbour-list codes. The periodic vectors stay as given; those of
    non-periodic directions only bin the atoms, so where one is zero or the cell is singular they
    are replaced by vectors orthogonal to the periodic ones, as long as the atoms' extent + 1 A."""
    free = np.flatnonzero(~pbc)
    if len(free) == 0:
        return cell.copy()
    singular = np.linalg.svd(cell, compute_uv=False)
    if singular[-1] > 1e-8 * singular[0] and min(np.linalg.norm(cell[k]) for k in free) >= ZERO_LENGTH:
        return cell.copy()
    out = cell.copy()
    periodic = cell[pbc]
    complement = np.linalg.svd(periodic)[2][len(periodic):] if len(periodic) else np.eye(3)
    for k, direction in zip(free, complement):
        along = positions @ direction
        out[k] = direction * (along.max() - along.min() + 1.0)
    return out
