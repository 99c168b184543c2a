"""Choosing a fine-tune when labels are few: k-fold cross-validation over all N structures.

With N = 10-50 accurate energies, a 20 % validation split holds 2-10 of them, and its best
epoch is noise (at N = 25 it once returned the untouched starting model). Here every
structure validates exactly once: the N structures are split into k folds; for each fold the
pre-trained model is fine-tuned on the other folds (shifts re-fitted on them first) and its
validation loss on the fold is recorded after every epoch. Epoch 0 is the starting model with
re-fitted shifts, i.e. the zero-shot baseline. The epoch whose loss, summed over the folds, is
lowest is then used for one fit on all N structures with the same schedule; if epoch 0 wins,
the result is the zero-shot model, so the returned model is never worse than its baseline on
the selection data.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from .graph import StructureGraph


def fold_indices(n: int, k: int, seed: int = 0) -> List[np.ndarray]:
    """k disjoint folds covering range(n) in a seeded random order (sizes differ by at most 1)."""
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= folds <= structures, got {k} folds for {n} structures")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


@dataclass
class CVResult:
    """Per-fold validation losses after each epoch: losses[f, e] for fold f after e epochs."""
    losses: np.ndarray
    fold_sizes: np.ndarray

    @property
    def curve(self) -> np.ndarray:
        """Loss per validation structure after each epoch, pooled over all folds."""
        return (self.losses * self.fold_sizes[:, None]).sum(axis=0) / self.fold_sizes.sum()

    @property
    def best_epoch(self) -> int:
        return int(np.argmin(self.curve))


def cross_validate(graphs: Sequence[StructureGraph], make_trainer: Callable, folds: int, epochs: int,
                   seed: int = 0, on_epoch: Optional[Callable] = None, progress=None) -> CVResult:
    """Fine-tune once per fold with `make_trainer(train_graphs, valid_graphs)` (a Trainer whose
    model starts at the pre-trained weights) for `epochs` epochs, validating after each.
    `on_epoch(fold, epoch, trainer)` is called after every validation (epoch 0 included)."""
    parts = fold_indices(len(graphs), folds, seed)
    losses = np.zeros((folds, epochs + 1))
    for f, held_out in enumerate(parts):
        held = set(held_out.tolist())
        train = [g for k, g in enumerate(graphs) if k not in held]
        valid = [graphs[k] for k in held_out]
        trainer = make_trainer(train, valid)
        losses[f, 0] = trainer.validate()["loss"]
        if on_epoch:
            on_epoch(f, 0, trainer)
        for epoch in range(1, epochs + 1):
            trainer.train_epoch()
            trainer.epoch = epoch
            losses[f, epoch] = trainer.validate()["loss"]
            if on_epoch:
                on_epoch(f, epoch, trainer)
            if progress is not None:
                progress.update(1)
    return CVResult(losses, np.array([len(p) for p in parts], dtype=float))
