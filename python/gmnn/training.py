"""Training loop: loss, optimiser, learning-rate decay, validation, early stopping,
checkpoints (best and last, atomic), per-epoch CSV metrics and exact resumption.

Resumption is exact because checkpoints are taken at epoch boundaries and the batch order of
epoch e is a pure function of (seed, e); an interrupted epoch is simply run again.
"""
import copy
import csv
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint, model_differences, save_checkpoint
from . import distributed, rundir
from .config import Config, ConfigError, config_to_dict
from .dataset import PreparedData, load_data
from .evaluation import error_metrics, format_table, predict_graphs, write_json
from .graph import collate
from .inference import predict
from .loss import loss_terms, validation_loss
from .model import GMNN, ModelOptions, param_groups
from .rundir import check_output_dir, checkpoint_bytes
from .scale_shift import fit_scale_shift

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "valid_loss", "valid_energy_mae", "valid_energy_rmse",
                  "valid_energy_per_atom_mae", "valid_forces_mae", "valid_forces_rmse", "seconds"]


def lr_lambda(total_steps: int, final_factor: float, decay: str):
    total = max(total_steps, 1)
    if decay == "linear":
        return lambda step: 1.0 - (1.0 - final_factor) * min(step, total) / total
    return lambda step: final_factor ** (min(step, total) / total)


class _Interrupted(Exception):
    pass


class NonFiniteLoss(RuntimeError):
    pass


MAX_ROLLBACKS = 5  # NaN/inf losses in a row before training gives up


class Trainer:
    """Train a GM-NN from a Config. `model` may be given (fine-tuning); else one is built."""

    def __init__(self, config: Config, model: Optional[GMNN] = None, data: Optional[PreparedData] = None,
                 param_groups_fn=None, fit_scale: bool = True, show_progress: bool = True,
                 regularizer=None, stop_epoch: Optional[int] = None):
        """`regularizer(model) -> scalar tensor` is added to every training step's loss
        (fine-tuning's L2-SP anchor); validation and early stopping see the data loss only.
        `stop_epoch`: stop there, keeping the schedule of `training.epochs` (0: the starting
        model is the run's result, as gmnn-finetune --zero-shot writes it)."""
        self.config = config
        self.stop_epoch = stop_epoch
        self.regularizer = regularizer
        self.out = Path(config.output_dir)
        t = config.training
        torch.manual_seed(t.seed)
        if t.threads:
            torch.set_num_threads(t.threads)
        self.data = data or (load_data(config) if model is None
                             else load_data(config, model.atomic_numbers, model.cutoff))
        if not self.data.train:
            raise ValueError("no training structures")
        if model is None:
            model = GMNN(ModelOptions.from_config(config.model, self.data.elements))
            fit_scale_shift(model, self.data.train, scale=fit_scale)
        self.model = model.to(t.device)
        config.model = model.options.to_config()  # config.json and checkpoints say what was trained
        groups = (param_groups_fn or (lambda mdl: param_groups(mdl, t.lr)))(self.model)
        self.optimizer = torch.optim.Adam(groups, lr=t.lr, amsgrad=(t.optimizer == "amsgrad"))
        steps_per_epoch = math.ceil(len(self.data.train) / t.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(t.epochs * steps_per_epoch, t.lr_final_factor, t.decay))
        self.epoch = 0
        self.best_loss = math.inf
        self.best_epoch = 0
        self.show_progress = show_progress
        # what the uncertainty of the result is calibrated on (calibrate_checkpoint's arguments)
        self.calibration = {"train": self.data.train, "valid": self.data.valid}

    # ---- checkpoints ---------------------------------------------------------------------
    def _payload(self) -> dict:
        return {"model": self.model.checkpoint_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "best_loss": self.best_loss,
                "best_epoch": self.best_epoch, "config": config_to_dict(self.config), "gmnn_version": __version__}

    def resume(self, path=None) -> None:
        path = Path(path or self.out / "last.ckpt")
        state = load_checkpoint(path, purpose="resuming")
        differences = model_differences(state["model"]["options"], self.model.options, where=path.name)
        if differences:
            raise CheckpointError(f"cannot resume from {path}, its model differs: {'; '.join(differences)}. "
                                  "Restore these settings, or start a new run (--overwrite, or another output_dir)")
        self.model.load_weights(state["model"]["state_dict"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise CheckpointError(f"cannot resume from {path}: its optimizer state does not fit this run's "
                                  f"trained layers ({exc}); was finetune.freeze changed?") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_loss, self.best_epoch = state["epoch"], state["best_loss"], state["best_epoch"]
        _truncate_metrics(self.out / "metrics.csv", self.epoch)
        log.info("resumed from %s at epoch %d", path, self.epoch)

    # ---- the loop ------------------------------------------------------------------------
    def train_epoch(self) -> float:
        t = self.config.training
        self.model.train()
        order = np.random.default_rng([t.seed, self.epoch]).permutation(len(self.data.train))
        rank, size = distributed.rank_and_size()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        total, n = 0.0, 0
        for start in range(0, len(order), t.batch_size):
            whole = order[start:start + t.batch_size]
            mine = whole[rank::size]  # data parallel: this rank's share of the batch
            self.optimizer.zero_grad(set_to_none=True)
            loss_value = 0.0
            if len(mine):
                batch = collate([self.data.train[k] for k in mine]).to(t.device)
                out = predict(self.model, batch, forces=t.force_weight > 0, create_graph=True)
                loss = loss_terms(out, batch, t.energy_weight, t.force_weight)
                if self.regularizer is not None:
                    loss = loss + self.regularizer(self.model)
                loss_value = float(loss.detach())
                if torch.isfinite(loss):
                    (loss * (len(mine) / len(whole))).backward()
            if not distributed.all_ranks_true(np.isfinite(loss_value)):
                raise NonFiniteLoss(f"loss is {loss_value} in epoch {self.epoch + 1}")
            distributed.reduce_gradients(params)
            self.optimizer.step()
            self.scheduler.step()
            total += distributed.sum_over_ranks(loss_value * len(mine))
            n += len(whole)
        return total / max(n, 1)

    def validate(self) -> Dict[str, float]:
        t = self.config.training
        graphs = self.data.valid or self.data.train
        self.model.eval()
        # energy-only training (force_weight 0) selects on energies: no force pass
        preds = predict_graphs(self.model, graphs, t.eval_batch_size, forces=t.force_weight > 0, device=t.device)
        metrics = error_metrics(preds)
        metrics["loss"] = validation_loss(preds, t.energy_weight, t.force_weight)
        return metrics

    def run(self) -> Dict[str, float]:
        t = self.config.training
        self.main = distributed.is_main()  # only rank 0 writes files
        if self.main:
            check_output_dir(self.out, needed_bytes=3 * checkpoint_bytes(self.model) + 2**20)
            with rundir.naming(self.out / "config.json"):
                write_json(self.out / "config.json", config_to_dict(self.config))
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM,)}

        def on_term(signum, frame):
            raise _Interrupted()
        signal.signal(signal.SIGTERM, on_term)
        bar = tqdm(total=t.epochs, initial=self.epoch, desc="training", unit="epoch",
                   disable=not (self.show_progress and self.main), mininterval=1.0, dynamic_ncols=True)
        try:
            good_state, rollbacks = self._snapshot(), 0
            if self.epoch == 0:
                # the starting model is a candidate too: a fine-tune that never beats its
                # starting point on validation returns the starting point, not something worse
                started = time.perf_counter()
                metrics = self.validate()
                self.best_loss = metrics["loss"]
                if self.main:
                    self._append_metrics(float("nan"), metrics, time.perf_counter() - started)
                self._save("best.ckpt", self._payload())
            last_epoch = t.epochs if self.stop_epoch is None else min(t.epochs, self.stop_epoch)
            while self.epoch < last_epoch:
                started = time.perf_counter()
                try:
                    train_loss = self.train_epoch()
                except NonFiniteLoss as exc:
                    rollbacks += 1
                    if rollbacks > MAX_ROLLBACKS:
                        raise NonFiniteLoss(f"{exc}; still non-finite after {MAX_ROLLBACKS} rollbacks "
                                            f"with halved learning rates: check the data") from None
                    self._restore(good_state, lr_factor=0.5 ** rollbacks)
                    log.warning("%s: rolled back to epoch %d, learning rate x %g", exc, self.epoch, 0.5 ** rollbacks)
                    continue
                metrics = self.validate()
                self.epoch += 1
                improved = metrics["loss"] < self.best_loss
                if improved:
                    self.best_loss, self.best_epoch = metrics["loss"], self.epoch
                if self.main:
                    self._append_metrics(train_loss, metrics, time.perf_counter() - started)
                payload = self._payload()
                if improved:
                    self._save("best.ckpt", payload)
                self._save("last.ckpt", payload)
                good_state = self._snapshot()
                bar.update(1)
                shown = {"E_meV_atom": f"{1000 * metrics['energy_per_atom_mae']:.2f}"}
                if t.force_weight > 0:
                    shown["F_meV_A"] = f"{1000 * metrics['forces_mae']:.1f}"
                bar.set_postfix(**shown, best=self.best_epoch)
                if t.patience and self.epoch - self.best_epoch >= t.patience:
                    log.info("early stopping at epoch %d (best %d)", self.epoch, self.best_epoch)
                    break
        except (KeyboardInterrupt, _Interrupted) as exc:
            bar.close()
            signum = signal.SIGTERM if isinstance(exc, _Interrupted) else signal.SIGINT
            if self.main:  # the epoch last.ckpt holds, which self.epoch may have passed already
                print(rundir.interrupted_message(self.out, signum))
            raise SystemExit(128 + signum)  # 143 for SIGTERM, 130 for Ctrl-C, as the shell reports them
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.finish()

    def _save(self, name: str, payload: dict) -> None:
        if self.main:
            save_checkpoint(self.out / name, payload)

    def finish(self) -> Dict[str, Dict[str, float]]:
        """Evaluate the best model on every set, print a table, write final_metrics.json."""
        t = self.config.training
        distributed.barrier()  # best.ckpt is written by rank 0
        if self.main:
            calibrate_checkpoint(self.out / "best.ckpt", **self.calibration)
        distributed.barrier()
        payload = load_checkpoint(self.out / "best.ckpt")
        best = GMNN.from_checkpoint_state(payload["model"]).to(t.device).eval()
        results = {}
        for name, graphs in (("train", self.data.train), ("valid", self.data.valid), ("test", self.data.test)):
            if graphs:
                results[name] = error_metrics(predict_graphs(best, graphs, t.eval_batch_size, device=t.device,
                                                             uncertainty=best.has_uncertainty))
        results["best_epoch"] = self.best_epoch
        results["uncertainty"] = payload.get("uncertainty", {})
        if self.main:
            with rundir.naming(self.out / "final_metrics.json"):
                write_json(self.out / "final_metrics.json", results)
            print(format_table({k: v for k, v in results.items() if isinstance(v, dict) and "n_structures" in v}))
        return results

    def _snapshot(self) -> dict:
        """Model, optimizer and scheduler state at an epoch boundary (for NaN rollback)."""
        import copy
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                              "scheduler": self.scheduler.state_dict()})

    def _restore(self, state: dict, lr_factor: float) -> None:
        import copy
        state = copy.deepcopy(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = [lr * lr_factor for lr in self.scheduler.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = lr * lr_factor

    def _append_metrics(self, train_loss: float, m: Dict[str, float], seconds: float) -> None:
        append_metrics(self.out / "metrics.csv", self.epoch, self.optimizer.param_groups[-1]["lr"], train_loss, m,
                       seconds)


def calibrate_checkpoint(path: Path, train, valid, folds=()) -> dict:
    """Fit the uncertainty of the model in checkpoint `path` once (calibrate_model), and save it
    there. The payload records the summary, so finishing a run again does not add `train` twice."""
    payload = load_checkpoint(path)
    if "uncertainty" in payload:
        return payload["uncertainty"]
    model = GMNN.from_checkpoint_state(payload["model"]).eval()
    payload["uncertainty"] = calibrate_model(model, train, valid, folds)
    payload["model"] = model.checkpoint_state()
    save_checkpoint(path, payload)
    return payload["uncertainty"]


def calibrate_model(model: GMNN, train, valid, folds=()) -> dict:
    """Fit `model`'s uncertainty (uncertainty.py) in place: C from `train` on top of what the
    model carries already (a fine-tune's pre-trained C), the scales from `valid` (or from
    cross-validation `folds`, uncertainty.fit). Data that cannot calibrate it leave the model
    without an uncertainty rather than with a wrong one; the summary says why."""
    from . import uncertainty
    prior = copy.deepcopy(model.uncertainty)
    try:
        u = uncertainty.fit(model, train, valid, prior=prior, folds=folds)
        log.info("uncertainty calibrated on %d held-out structures: sigma_E scale %.3g, floor %.3g eV; sigma_F scale "
                 "%.3g, floor %.3g eV/A", u["n_held_out"], u["energy_scale"], u["energy_floor"], u["force_scale"],
                 u["force_floor"])
    except uncertainty.CalibrationError as exc:
        model.uncertainty.energy_scale.zero_()
        u = {"calibrated": False, "reason": str(exc)}
        log.warning("no uncertainty: %s", exc)
    return u


def append_metrics(path: Path, epoch: int, lr: float, train_loss: float, m: Dict[str, float],
                   seconds: float = float("nan")) -> None:
    """One row of metrics.csv (the header first, if the file is new)."""
    new = not path.exists()
    with rundir.naming(path), open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(METRIC_COLUMNS)
        w.writerow([epoch, lr, train_loss, m["loss"], m["energy_mae"], m["energy_rmse"], m["energy_per_atom_mae"],
                    m["forces_mae"], m["forces_rmse"], seconds])


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop CSV rows of epochs after the checkpoint (they will be run again)."""
    if not path.exists():
        return
    with open(path) as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
    tmp = path.with_suffix(".tmp")
    with rundir.naming(tmp), open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


def train(config: Config, resume: bool = False, show_progress: bool = True, overwrite: bool = False) -> Dict:
    """Train into config.output_dir, which this run holds (rundir.claimed): `resume` continues
    the run there, `overwrite` replaces it; a directory holding a run is refused otherwise."""
    if config.finetune is not None:
        raise ConfigError("the config has a finetune: section, which gmnn-train would ignore (it trains from "
                          "scratch); fine-tune with: gmnn-finetune CONFIG --from PRETRAINED.ckpt")
    with rundir.claimed(config.output_dir, resume=resume, overwrite=overwrite):
        trainer = Trainer(config, show_progress=show_progress)
        if resume:
            trainer.resume()
        return trainer.run()
