"""Which candidate structures to label next (gmnn-active): a batch chosen greedily in the
model's own last-layer posterior (uncertainty.py), or at random (the baseline).

Greedy with diversity: pick the candidate whose largest per-atom rigidity term |W^T phi_i|^2
(sigma_F^2 up to the calibrated scale and floor, so the same ranking) is largest under the
current C; then add that candidate's atoms to C (C += sum_i phi_i phi_i^T, as if it were
labelled already) and score the rest again, W W^T = (C + reg I)^-1. A candidate that is
nearly the same as one picked loses its uncertainty with that pick, so a batch spreads over
the events an MD run found instead of taking the k most uncertain frames of one event.
"""
from typing import List, NamedTuple, Sequence

import numpy as np


class Selection(NamedTuple):
    indices: List[int]       # the chosen candidates, in the order they were picked
    rigidity: List[float]    # each one's largest per-atom |W^T phi|^2 when it was picked (C with the earlier picks)


def greedy_selection(phi: np.ndarray, structure: np.ndarray, covariance: np.ndarray, regulariser: float,
                     batch: int) -> Selection:
    """`batch` candidates (at most all of them) by the greedy rank-update rule above. `phi`:
    per-atom last-layer features (n_atoms, d) of all candidates, `structure`: each atom's
    candidate index 0..n-1, `covariance` C and `regulariser` reg: the model's
    (model.uncertainty.covariance, .regulariser). Ties go to the lower index: the same inputs give
    the same selection."""
    from .uncertainty import whitening
    phi = np.asarray(phi, dtype=np.float64)
    structure = np.asarray(structure, dtype=np.int64)
    n = int(structure.max()) + 1 if len(structure) else 0
    cov = np.array(covariance, dtype=np.float64, copy=True)
    available = np.ones(n, dtype=bool)
    chosen, scores = [], []
    for _ in range(min(batch, n)):
        per_atom = np.sum((phi @ whitening(cov, regulariser)) ** 2, axis=1)
        per_candidate = np.full(n, -np.inf)
        np.maximum.at(per_candidate, structure, per_atom)
        per_candidate[~available] = -np.inf
        pick = int(np.argmax(per_candidate))
        chosen.append(pick)
        scores.append(float(per_candidate[pick]))
        available[pick] = False
        rows = phi[structure == pick]
        cov += rows.T @ rows
    return Selection(chosen, scores)


def random_selection(n: int, batch: int, seed: Sequence[int]) -> Selection:
    """`batch` of `n` candidates drawn without replacement by a generator seeded with `seed`."""
    picks = np.random.default_rng(list(seed)).choice(n, size=min(batch, n), replace=False)
    return Selection([int(k) for k in picks], [float("nan")] * len(picks))
