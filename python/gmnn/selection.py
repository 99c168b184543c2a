"""Choosing a fine-tune when labels are few: k-fold cross-validation and a soup of the folds.

With N = 10-50 accurate energies, a 20 % validation split holds 2-10 of them, and its best
epoch is noise (measured at N = 50: it kept epoch 20 of 400, 0.54 kcal/mol, where the methods
below give 0.40; at N = 25 it once returned the untouched starting model). Here every
structure validates exactly once: the N structures are split into k folds, and k copies of the
pre-trained model are fine-tuned side by side, each on all folds but one (shifts re-fitted on
them first), validated on its own fold after every epoch. Epoch 0 is the starting model with
re-fitted shifts, the zero-shot baseline.

Cross-validation then decides one thing: whether fine-tuning helps at all. If the loss pooled
over all N held-out predictions after the last epoch is lower than at epoch 0, the result is the
mean of the k fold models' weights after the last epoch (a "model soup", Wortsman et al.
2022: models fine-tuned from one start share a basin, so their mean is a good model whose errors
average out like an ensemble's, at the cost of one model), with energy shifts re-fitted on all
N; otherwise it is the zero-shot model. So the result never loses to its baseline on the
selection data.

Why not the epoch with the lowest pooled loss: at a fine-tuning learning rate a single model's
held-out loss jumps from epoch to epoch, and its minimum is noise. Measured on ethanol, N = 25:
one run's minimum fell at epoch 370 (soup 0.42 kcal/mol on the test set), and the same
settings after a change of the arithmetic in the 8th digit put it at epoch 20 (0.61). At the end
of the decayed schedule the fold models are settled, and their soup was as good as at any
chosen epoch (examples/transfer_learning/README.md).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .graph import StructureGraph


def fold_indices(n: int, k: int, seed: int = 0) -> List[np.ndarray]:
    """k disjoint folds covering range(n) in a seeded random order (sizes differ by at most 1)."""
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= folds <= structures, got {k} folds for {n} structures")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def fold_splits(graphs: Sequence, k: int, seed: int = 0) -> List[Tuple[list, list]]:
    """(training part, held-out fold) for each of the k folds of `graphs` (fold_indices)."""
    splits = []
    for held_out in fold_indices(len(graphs), k, seed):
        held = set(held_out.tolist())
        splits.append(([g for i, g in enumerate(graphs) if i not in held], [graphs[i] for i in held_out]))
    return splits


@dataclass
class CVResult:
    """losses[f, e]: validation loss of fold f's model on its held-out fold after e epochs."""
    losses: np.ndarray
    fold_sizes: np.ndarray
    soup: Optional[Dict[str, torch.Tensor]] = None  # mean weights of the fold models at best_epoch
    # (fold model after the last epoch, its training graphs, its held-out graphs): what the
    # uncertainty is calibrated on (uncertainty.fit)
    folds: Sequence = ()

    @property
    def curve(self) -> np.ndarray:
        """Loss per held-out structure after each epoch, pooled over all folds."""
        return pooled(self.losses, self.fold_sizes)

    @property
    def best_epoch(self) -> int:
        """The last epoch if fine-tuning lowered the pooled held-out loss, else 0 (zero-shot)."""
        curve = self.curve
        return len(curve) - 1 if curve[-1] < curve[0] else 0


def pooled(values: np.ndarray, fold_sizes: np.ndarray) -> np.ndarray:
    """Per-structure mean of per-fold means (the folds differ in size by one at most)."""
    return (values * fold_sizes[:, None]).sum(axis=0) / fold_sizes.sum()


def mean_weights(models: Sequence[torch.nn.Module]) -> Dict[str, torch.Tensor]:
    states = [m.state_dict() for m in models]
    return {k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype) for k in states[0]}


def cross_validate(graphs: Sequence[StructureGraph], make_trainer: Callable, folds: int, epochs: int,
                   seed: int = 0, on_epoch: Optional[Callable] = None) -> CVResult:
    """Fine-tune k copies with `make_trainer(train_graphs, valid_graphs)` (Trainers whose models
    start at the pre-trained weights) side by side for `epochs` epochs, validating each on its
    fold after every epoch; the soup is that of the chosen epoch (`CVResult.best_epoch`).
    `on_epoch(epoch, trainers, fold_metrics, train_losses)` is called after every validation
    (epoch 0 too, with no training losses)."""
    splits = fold_splits(graphs, folds, seed)
    sizes = np.array([len(held) for _, held in splits], dtype=float)
    trainers = [make_trainer(train, held) for train, held in splits]
    losses = np.zeros((folds, epochs + 1))
    start = mean_weights([t.model for t in trainers])
    for epoch in range(epochs + 1):
        train_losses = []
        if epoch:
            for trainer in trainers:
                train_losses.append(trainer.train_epoch())
                trainer.epoch = epoch
        metrics = [trainer.validate() for trainer in trainers]
        losses[:, epoch] = [m["loss"] for m in metrics]
        if on_epoch:
            on_epoch(epoch, trainers, metrics, train_losses)
    result = CVResult(losses, sizes, folds=[(t.model.eval(), *split) for t, split in zip(trainers, splits)])
    result.soup = mean_weights([t.model for t in trainers]) if result.best_epoch else start
    return result
