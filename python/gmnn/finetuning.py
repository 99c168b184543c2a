"""Transfer learning (spec section 2): start from a pre-trained model, re-fit the energy shifts
on the new level of theory, then train with layer-wise (discriminative) learning rates,
optionally freezing layers; energy-only fine-tuning is `training.force_weight: 0`.

Which epoch to keep is chosen by k-fold cross-validation over all fine-tuning structures
(selection.py; `finetune.selection: cv`, the default), and the zero-shot model (epoch 0) is
one of the candidates: the result is never worse than that baseline on the selection data.

`finetune.replay_file` trains on structures at the pre-training level alongside the new labels
(co-training with level-specific energy shifts, replay_graphs): selection still judges the new
labels only."""
import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import rundir
from .loading import load
from .config import FINETUNE_TRAINING_DEFAULTS, Config, ConfigError, FinetuneConfig, given
from .data import DataError, UnknownElementError
from .model import GMNN, ModelOptions, param_groups
from .graph import StructureGraph, build_graphs
from .scale_shift import element_counts, fit_scale_shift, fit_shift
from . import __version__
from .checkpoint import CheckpointError, save_checkpoint
from .config import config_to_dict
from .evaluation import error_metrics, format_table, predict_graphs, write_json
from .selection import CVResult, cross_validate, fold_splits
from .dataset import PreparedData, graphs_of, read_splits
from .rundir import check_output_dir, checkpoint_bytes
from .training import Trainer, append_metrics, calibrate_model

log = logging.getLogger(__name__)


def extend_elements(model: GMNN, new_numbers: Sequence[int]) -> GMNN:
    """A copy of `model` that also knows `new_numbers`: pair coefficients of known pairs and the
    network are kept; pairs with a new element start from U[-1, 1] like a fresh model; shifts of
    new elements are fitted with the others, their scale is the mean of the known ones."""
    numbers = sorted(set(model.atomic_numbers) | {int(z) for z in new_numbers})
    if numbers == model.atomic_numbers:
        return model
    options = ModelOptions(**{**model.options.__dict__, "atomic_numbers": numbers})
    new = GMNN(options)
    old_index = [numbers.index(z) for z in model.atomic_numbers]
    with torch.no_grad():
        idx = torch.tensor(old_index)
        new.descriptor.radial.pair_coefficients[idx[:, None], idx[None, :]] = model.descriptor.radial.pair_coefficients
        new.network.load_state_dict(model.network.state_dict())
        new.scale_shift.scale.fill_(float(model.scale_shift.scale.mean()))
        new.scale_shift.scale[idx] = model.scale_shift.scale
        new.scale_shift.shift[idx] = model.scale_shift.shift
    return new


def prepare(config: Config, pretrained: GMNN, add_elements: bool = False):
    """Data for fine-tuning in the pre-trained model's element order (extending it if asked)."""
    splits = read_splits(config)
    try:
        data = graphs_of(splits, pretrained.atomic_numbers, pretrained.cutoff)
    except UnknownElementError as exc:
        if not add_elements:
            raise UnknownElementError(f"{exc}; pass --add-elements to add new elements to the pre-trained model") from None
        pretrained = extend_elements(pretrained, {int(z) for s in splits.train for z in s.numbers})
        log.info("added elements: model now knows %s", pretrained.symbols)
        data = graphs_of(splits, pretrained.atomic_numbers, pretrained.cutoff)
    return pretrained, data


def check_config(config: Config, pretrained: GMNN) -> FinetuneConfig:
    """The fine-tuning section (defaults if absent), after refusing what cannot be meant: a
    `model:` section that contradicts the pre-trained architecture (which fine-tuning keeps),
    unknown layer names in `freeze`, or every layer frozen. Training fields the config does
    not give take gmnn-finetune's defaults (config.FINETUNE_TRAINING_DEFAULTS)."""
    config.finetune = config.finetune or FinetuneConfig()
    ft = config.finetune
    for name, value in FINETUNE_TRAINING_DEFAULTS.items():
        if not given(config.training, name):
            setattr(config.training, name, value)
    contradictions = pretrained.options.contradictions(config.model)
    if contradictions:
        raise ConfigError("the config's model: section contradicts the pre-trained model, whose architecture "
                          f"fine-tuning keeps: {'; '.join(contradictions)}. Remove these keys")
    layers = [name for name, _ in pretrained.layer_groups()]
    unknown = [name for name in ft.freeze if name not in layers]
    if unknown:
        raise ConfigError(f"finetune.freeze: unknown layer(s) {', '.join(map(repr, unknown))}; "
                          f"the layers are {', '.join(layers)}")
    if set(layers) <= set(ft.freeze):
        raise ConfigError("finetune.freeze lists every layer, so nothing would be trained; for the "
                          "pre-trained model with re-fitted energy shifts only, use gmnn-finetune --zero-shot")
    if ft.anchor_weight < 0:
        raise ConfigError(f"finetune.anchor_weight must be >= 0, got {ft.anchor_weight}")
    return ft


def finetuner(config: Config, pretrained: GMNN, add_elements: bool = False, show_progress: bool = True,
              data: Optional[PreparedData] = None, stop_epoch: Optional[int] = None) -> Trainer:
    """A Trainer that fine-tunes `pretrained` (modified in place: pass a copy to keep it) on the
    config's data, or on `data` when given (graphs already built for this model)."""
    ft = check_config(config, pretrained)
    if data is None:
        model, data = prepare(config, pretrained, add_elements)
    else:
        model = pretrained
    if ft.refit_shift:
        fit_scale_shift(model, data.train, scale=ft.refit_scale)
    lr = config.training.lr
    groups_fn = lambda m: param_groups(m, lr, ft.layer_lr_factor, ft.freeze)
    regularizer = anchor_to(model, ft.anchor_weight) if ft.anchor_weight > 0 else None
    return Trainer(config, model=model, data=data, param_groups_fn=groups_fn, show_progress=show_progress,
                   regularizer=regularizer, stop_epoch=stop_epoch)


def anchor_to(model: GMNN, weight: float):
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018): weight * sum over the descriptor and network
    parameters of (theta - theta_start)^2, i.e. weight decay towards the pre-trained weights
    (each parameter's gradient gains 2 * weight * (theta - theta_start)). Few energies constrain few directions of the weights;
    the anchor keeps every other direction where pre-training put it, so regions the new data
    never sample keep the pre-trained potential instead of drifting (energy-only fine-tunes
    without it opened holes in MD; see examples/transfer_learning/README.md)."""
    start = {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith("scale_shift")}

    def penalty(current: GMNN) -> torch.Tensor:
        total = sum(((p - start[name]) ** 2).sum() for name, p in current.named_parameters() if name in start)
        return weight * total.double()
    return penalty


def finetune(config: Config, pretrained_path=None, add_elements=False, resume=False, show_progress=True,
             overwrite=False, zero_shot_only=False) -> Dict:
    path = pretrained_path or (config.finetune and config.finetune.pretrained)
    if not path:
        from .pretrained import list_pretrained
        raise ConfigError("no pre-trained model: give --from PRETRAINED.ckpt (or the name of a shipped one: "
                          f"{', '.join(list_pretrained())}) or finetune.pretrained in the config")
    config.finetune = config.finetune or FinetuneConfig()
    config.finetune.pretrained = str(path)
    with rundir.claimed(config.output_dir, resume=resume, overwrite=overwrite):
        pretrained = load(path, purpose="fine-tuning")
        ft = check_config(config, pretrained)
        model, data = prepare(config, pretrained, add_elements)
        if zero_shot_only:
            return write_zero_shot(config, model, data, show_progress)
        replay = replay_graphs(ft, model, data) if ft.replay_file else []
        if ft.selection == "validation":
            data = PreparedData(data.train + replay, data.valid, data.test, data.elements)
            trainer = finetuner(config, model, data=data, show_progress=show_progress)
            if resume:
                trainer.resume()
            return trainer.run()
        pool = PreparedData(data.train + data.valid, [], data.test, data.elements)
        if data.valid:
            log.info("finetune.selection cv: the %d training and %d validation structures are pooled; each "
                     "validates once in %d-fold cross-validation", len(data.train), len(data.valid), ft.folds)
        finished = Path(config.output_dir) / "final_metrics.json"
        if resume and finished.exists():
            changed = settings_changed(Path(config.output_dir) / "config.json", config)
            if changed:
                raise CheckpointError(f"cannot resume from {Path(config.output_dir) / 'last.ckpt'}: that finished "
                                      f"run was made with other settings ({'; '.join(changed)}); start a new run "
                                      "with --overwrite, or another output_dir")
            log.info("%s: this cross-validated fine-tune has finished; nothing to resume", config.output_dir)
            return json.loads(finished.read_text())
        return cross_validated_finetune(config, model, pool, show_progress, replay)


def replay_graphs(ft: FinetuneConfig, model: GMNN, data: PreparedData) -> List[StructureGraph]:
    """finetune.replay_file's structures (labelled at another level, e.g. the pre-training one),
    their energies moved onto the new level so that one network can train on both: the
    zero-shot model (pre-trained network, shifts re-fitted on the new labels) predicts them, and
    the least-squares per-element shift of what it misses is the difference between the two
    levels' energy zeros, subtracted from their energies. Forces need no such step. Fitted once,
    from the zero-shot model: the network is trained to keep the replayed structures' energy
    differences and forces, the two levels keep their own zeros."""
    from .data import read_structures
    structures = read_structures(ft.replay_file, index=ft.replay_index)
    if not structures:
        raise DataError(f"finetune.replay_file {ft.replay_file}: no structures (replay_index {ft.replay_index!r})")
    try:
        graphs = build_graphs(structures, model.atomic_numbers, model.cutoff)
    except UnknownElementError as exc:
        raise UnknownElementError(f"finetune.replay_file: {exc}") from None
    labelled = [g for g in graphs if g.energy is not None]
    if labelled:
        n_elements = len(model.atomic_numbers)
        start = predict_graphs(zero_shot(model, data), labelled, forces=False).energy
        level_shift = fit_shift(labelled, n_elements, baseline=start)
        offsets = iter(element_counts(labelled, n_elements) @ level_shift)
        graphs = [dataclasses.replace(g, energy=g.energy - next(offsets)) if g.energy is not None else g
                  for g in graphs]
    log.info("replaying %d structures of %s (%d with energies, %d with forces) alongside the new labels",
             len(graphs), ft.replay_file, len(labelled), sum(g.forces is not None for g in graphs))
    return graphs


def settings_changed(saved_config: Path, config: Config) -> List[str]:
    """The training and finetune settings that differ from those of the run saved in config.json."""
    saved = json.loads(saved_config.read_text()) if saved_config.exists() else {}
    now = config_to_dict(config)
    return [f"{section}.{key}: {saved[section][key]!r} then, {value!r} now"
            for section in ("training", "finetune") for key, value in now[section].items()
            if section in saved and key in saved[section] and saved[section][key] != value]


def cross_validated_finetune(config: Config, model: GMNN, pool: PreparedData, show_progress: bool,
                             replay: Sequence[StructureGraph] = ()) -> Dict:
    """selection.py's k-fold fine-tune of `model` on `pool`, written as a run directory:
    metrics.csv (one row per epoch: mean training loss of the folds, errors pooled over the
    held-out folds), cross_validation.json (per-fold losses), best.ckpt (the soup of the fold
    models at the chosen epoch, shifts re-fitted on all structures, its uncertainty calibrated on
    the folds' held-out errors), folds/fold<k>.ckpt (the fold models after the last epoch) and
    final_metrics.json. `replay` structures join every fold's training part, never its held-out part.
    Cross-validation is not resumable part-way: `--resume` of an interrupted run starts it again
    (a finished one is left as it is)."""
    ft, t = config.finetune, config.training
    out = Path(config.output_dir)
    if len(pool.train) < 2:
        raise DataError(f"cross-validation needs at least 2 structures, got {len(pool.train)}; "
                        "set finetune.selection: validation, or give more labels")
    folds = min(ft.folds, len(pool.train))
    if folds < ft.folds:
        log.warning("finetune.folds %d > %d structures: using %d folds (leave-one-out)", ft.folds, len(pool.train), folds)
    check_output_dir(out, needed_bytes=(3 + folds) * checkpoint_bytes(model) + 2**20)
    with rundir.naming(out / "config.json"):
        write_json(out / "config.json", config_to_dict(config))
    (out / "metrics.csv").unlink(missing_ok=True)  # a restarted cross-validation rewrites every row
    from tqdm import tqdm
    bar = tqdm(total=t.epochs, desc=f"fine-tuning, {folds}-fold cross-validation", unit="epoch",
               disable=not show_progress, mininterval=1.0, dynamic_ncols=True)
    sizes, held_out = [], []  # held_out[e]: errors pooled over the held-out folds after e epochs

    def make(train, valid):
        sizes.append(len(valid))
        return finetuner(copy.deepcopy(config), copy.deepcopy(model), show_progress=False,
                         data=PreparedData(train + list(replay), valid, [], pool.elements))

    def record(epoch, trainers, metrics, train_losses):
        row = {k: float(np.dot(sizes, [m[k] for m in metrics]) / sum(sizes))
               for k in ("loss", "energy_mae", "energy_per_atom_mae", "forces_mae")}
        row["energy_rmse"] = float(np.sqrt(np.dot(sizes, [m["energy_rmse"] ** 2 for m in metrics]) / sum(sizes)))
        row["forces_rmse"] = float(np.sqrt(np.dot(sizes, [m["forces_rmse"] ** 2 for m in metrics]) / sum(sizes)))
        held_out.append(row)
        train_loss = float(np.mean(train_losses)) if epoch else float("nan")
        append_metrics(out / "metrics.csv", epoch, trainers[0].optimizer.param_groups[-1]["lr"], train_loss, row)
        if epoch:
            bar.update(1)
            bar.set_postfix(cv_E_meV_atom=f"{1000 * row['energy_per_atom_mae']:.2f}")
    cv = cross_validate(pool.train, make, folds, t.epochs, seed=t.seed, on_epoch=record)
    bar.close()
    write_json(out / "cross_validation.json", {"folds": folds, "epochs": t.epochs, "structures": len(pool.train),
                                               "fold_sizes": cv.fold_sizes.tolist(), "losses": cv.losses.tolist()})
    for k, (fold_model, _, _) in enumerate(cv.folds):  # an ensemble, for whoever wants one
        save_checkpoint(out / "folds" / f"fold{k}.ckpt", {"model": fold_model.checkpoint_state(), "epoch": t.epochs,
                                                          "config": config_to_dict(config), "gmnn_version": __version__})
    soup = copy.deepcopy(model)
    soup.load_state_dict(cv.soup)
    if ft.refit_shift:
        fit_scale_shift(soup, pool.train, scale=False)
    epoch = cv.best_epoch
    # the soup's uncertainty: C from all structures, scales from the fold models' held-out errors
    # (the zero-shot model's, shifts fitted on each fold's training part, if fine-tuning lost)
    folds = cv.folds if epoch else zero_shot_folds(model, [(train, held) for _, train, held in cv.folds])
    soup.eval()
    calibration = calibrate_model(soup, pool.train, [], folds=folds)
    payload = {"model": soup.checkpoint_state(), "epoch": epoch, "best_epoch": epoch, "best_loss": float(cv.curve[epoch]),
               "uncertainty": calibration, "config": config_to_dict(config), "gmnn_version": __version__}
    save_checkpoint(out / "best.ckpt", payload)
    save_checkpoint(out / "last.ckpt", payload)
    results = {name: error_metrics(predict_graphs(soup, graphs, t.eval_batch_size, device=t.device,
                                                uncertainty=soup.has_uncertainty))
               for name, graphs in (("train", pool.train), ("test", pool.test)) if graphs}
    results["best_epoch"] = epoch
    results["uncertainty"] = calibration
    results["selection"] = selection_summary(cv, held_out)
    write_json(out / "final_metrics.json", results)
    print(format_table({k: v for k, v in results.items() if isinstance(v, dict) and "n_structures" in v}))
    log.info("%s", results["selection"]["summary"])
    return results


def selection_summary(cv: CVResult, held_out: List[Dict[str, float]]) -> Dict:
    """What final_metrics.json and the log say about the choice (errors in eV, eV/A: pooled
    over the held-out folds)."""
    epoch, curve = cv.best_epoch, cv.curve
    winner = "zero-shot" if epoch == 0 else "fine-tuned"
    chosen, start = held_out[epoch], held_out[0]
    errors = f"held-out energy MAE {1000 * chosen['energy_mae']:.1f} meV vs zero-shot {1000 * start['energy_mae']:.1f}"
    if np.isfinite(chosen["forces_mae"]):
        errors += f", forces {1000 * chosen['forces_mae']:.0f} vs {1000 * start['forces_mae']:.0f} meV/A"
    return {"method": "cv-soup", "folds": len(cv.fold_sizes), "epoch": epoch, "winner": winner,
            "cv_loss": float(curve[epoch]), "zero_shot_cv_loss": float(curve[0]),
            "cv_loss_last_epoch": float(curve[-1]), "held_out": chosen, "held_out_zero_shot": start,
            "summary": (f"cross-validation ({len(cv.fold_sizes)} folds): {winner} model wins, epoch {epoch} of "
                        f"{len(curve) - 1} ({errors}); the result is the mean of the fold models' weights at that "
                        "epoch, shifts re-fitted on all structures")}


def write_zero_shot(config: Config, model: GMNN, data: PreparedData, show_progress: bool) -> Dict:
    """The baseline as a run directory like a fine-tune's: shifts re-fitted on the training
    (and validation) structures, no training; best.ckpt, metrics, final_metrics.json."""
    pool = PreparedData(data.train + data.valid, [], data.test, data.elements)
    trainer = finetuner(config, model, data=pool, show_progress=show_progress, stop_epoch=0)
    # its uncertainty: C from all structures, scales from each fold's errors judged by the others
    splits = fold_splits(pool.train, min(config.finetune.folds, len(pool.train)), config.training.seed) \
        if len(pool.train) >= 2 else []
    trainer.calibration = {"train": pool.train, "valid": [] if splits else pool.train,
                           "folds": zero_shot_folds(model, splits)}
    results = trainer.run()
    results["selection"] = {"method": "zero-shot", "epoch": 0, "winner": "zero-shot",
                            "summary": "zero-shot: the pre-trained model with energy shifts re-fitted"}
    write_json(trainer.out / "final_metrics.json", results)
    return results


def zero_shot_folds(pretrained: GMNN, splits) -> List:
    """(zero-shot model of the fold's training part, training part, held-out part) per
    (train, held) split: the zero-shot model's cross-validation folds (uncertainty.fit)."""
    return [(zero_shot(pretrained, PreparedData(train, [], [], [])), train, held) for train, held in splits]


def zero_shot(pretrained: GMNN, data: PreparedData) -> GMNN:
    """The baseline every fine-tune must beat: pre-trained weights, shifts re-fitted on the new data."""
    model = copy.deepcopy(pretrained)
    fit_scale_shift(model, data.train, scale=False)
    return model.eval()
