"""gmnn-active: active learning, resumable. Each iteration k runs MD with model k (the starting
model for k = 0), stops each trajectory where the model leaves its domain (largest per-atom
sigma_F above md.threshold, or a broken geometry), selects a batch of the frames it kept
(batch_selection.py: greedy in the model's posterior, so the batch spreads over events; or at
random, the baseline), labels them at `level` (labelling.py), and trains model k + 1 on the
initial data plus every label so far. It ends when every trajectory of an iteration runs
md.steps steps under the threshold, or after max_iterations labelled batches.

Every stage leaves its result and a marker on disk (output_dir/iter_k/<stage>.done), so an
interrupted loop continues where it stopped: finished stages are skipped, an interrupted MD
re-runs only the unfinished trajectories (seeded), the labelling continues in its file
(label_structures skips what is there), the training resumes from last.ckpt. The selection is
written (selected.xyz) before any label is computed, and reproduced from the same seeds, so no
structure is labelled twice. output_dir/report.{json,md,png}: labels used, errors and MD length
reached per iteration.

Re-training (`retrain`): `warm_start` (default) continues from the previous model with a fresh
learning-rate schedule on all data so far: few new labels move the minimum little, so a fraction
of the epochs a training from scratch needs is enough, and the labelled regions are learned on
top of what the model knew. `scratch` trains a new model each iteration (the architecture of
the starting model): costlier, but free of any history. Both calibrate the new model's
uncertainty on the validation structures, its C from all its training structures.
"""
import copy
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .config import (Config, ConfigError, DataConfig, TrainingConfig, _build, _fields, config_to_dict,
                     load_yaml_config)
from .config_rules import RULES, SEED_LIMIT, at_least, shown
from .clusters import cluster_around, molecules
from .labelling import Interrupted, label_structures

log = logging.getLogger(__name__)


# ---- configuration --------------------------------------------------------------------------

@dataclass
class MDConfig:
    start: str = ""                     # structures to start from (any ASE format); trajectory j starts from the j-th (cyclically)
    temperature: float = 300.0          # K (Langevin)
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    steps: int = 20000                  # the requested length: done when every trajectory runs this far under the threshold
    sample_every: int = 100             # keep a frame as a candidate every this many steps
    frames_before_stop: int = 5         # after a stop, also keep the frames of this many steps before it
    trajectories: int = 4               # per iteration, each with its own seed
    threshold: Optional[float] = None   # eV/A: the largest per-atom sigma_F still inside the model's domain (required)
    max_force: float = 50.0             # eV/A: a larger force means a broken geometry (the trajectory stops)
    isolated_distance: Optional[float] = 2.0  # A: an atom with no neighbour this close means a broken geometry; null: off


@dataclass
class SelectionConfig:
    batch: int = 10                     # labels per iteration
    method: str = "uncertainty"         # "uncertainty" (greedy, with diversity) or "random" (the baseline)
    cluster_molecules: int = 0          # 0: label the picked frames; N: label the cluster of at most N whole
                                        # molecules around each picked frame's most uncertain atom (liquids:
                                        # periodic frames that quantum chemistry cannot label whole)
    cluster_cutoff: float = 5.0         # A: molecules farther than this from the central one stay out


@dataclass
class ActiveConfig:
    output_dir: str = "runs/active"
    model: str = ""                     # the calibrated checkpoint (.ckpt) to start from
    level: str = ""                     # level of theory of the labels, as gmnn-label --level ("pbe/def2-svp", "gfn2-xtb")
    label_workers: int = 1              # labelling processes
    retrain: str = "warm_start"         # "warm_start" (from the previous model) or "scratch" (see the module docstring)
    max_iterations: int = 10            # labelled batches at most
    seed: int = 0                       # MD and random selection
    data: DataConfig = field(default_factory=DataConfig)   # what the starting model was trained on, with validation structures
    md: MDConfig = field(default_factory=MDConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)  # each iteration's training (as gmnn-train's)


def _one_of(*names):
    return lambda v: None if v in names else f"must be one of {', '.join(map(repr, names))}, got {shown(v)}"


def _positive(unit):
    return lambda v: None if v > 0 else f"must be positive ({unit}), got {shown(v)}"


def _required(what):
    return lambda v: None if v.strip() else f"is required ({what})"


ACTIVE_RULES = {
    "output_dir": RULES["output_dir"],
    "model": _required("the calibrated checkpoint to start from"),
    "level": _required("the level of theory of the labels, e.g. pbe/def2-svp or gfn2-xtb"),
    "label_workers": at_least(1),
    "retrain": _one_of("warm_start", "scratch"),
    "max_iterations": at_least(0),
    "seed": lambda v: None if 0 <= v <= SEED_LIMIT else f"must be between 0 and {SEED_LIMIT}, got {shown(v)}",
    "md.start": _required("the structures the MD starts from"),
    "md.temperature": _positive("K"),
    "md.timestep_fs": _positive("fs"),
    "md.friction_per_fs": _positive("1/fs"),
    "md.steps": at_least(1),
    "md.sample_every": at_least(1),
    "md.frames_before_stop": at_least(0),
    "md.trajectories": at_least(1),
    "md.threshold": _positive("eV/A"),
    "md.max_force": _positive("eV/A"),
    "md.isolated_distance": lambda v: _positive("A")(v) and f"{_positive('A')(v)} (or null: no check)",
    "selection.batch": at_least(1),
    "selection.method": _one_of("uncertainty", "random"),
    "selection.cluster_molecules": at_least(0),
    "selection.cluster_cutoff": _positive("A"),
}
# settings --resume may change: they do not change what the finished stages did
CHANGEABLE = {"max_iterations", "label_workers", "training.threads", "training.device", "training.eval_batch_size"}


def active_config_from_dict(values: dict) -> ActiveConfig:
    config = _build(ActiveConfig, values, "")
    for name, value in _fields(config):
        rule = ACTIVE_RULES.get(name) or RULES.get(name)
        problem = None if value is None else rule(value)
        if problem:
            raise ConfigError(f"{name} {problem}")
    if config.md.threshold is None:
        raise ConfigError("md.threshold is required: the largest per-atom force uncertainty (eV/A) that still counts "
                          "as inside the model's domain (see the model's calibration, e.g. gmnn-eval --plot)")
    d = config.data
    if not d.valid_file and d.n_valid == 0:
        raise ConfigError("data: give validation structures (data.valid_file, or data.n_valid > 0): every iteration's "
                          "model calibrates its uncertainty on them")
    if config.training.energy_weight + config.training.force_weight == 0:
        raise ConfigError("training.energy_weight and force_weight cannot both be 0")
    from .levels import LabelError, Level
    try:
        Level.parse(config.level)
    except LabelError as exc:
        raise ConfigError(f"level: {exc}") from None
    return config


def load_active_config(path) -> ActiveConfig:
    return load_yaml_config(path, active_config_from_dict)


class ActiveInterrupted(KeyboardInterrupt):
    """Stopped by SIGTERM or Ctrl-C; everything finished is on disk, --resume continues."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _Stopped(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def run_active(config: ActiveConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Dict:
    """The active-learning loop into config.output_dir (see the module docstring); returns the
    report. `resume` continues a loop there, `overwrite` replaces it; a directory that holds a
    loop is refused otherwise."""
    from . import rundir
    if resume and overwrite:
        raise rundir.RunDirError("--resume and --overwrite exclude each other: continue the run, or replace it")
    out = Path(config.output_dir)
    lock = rundir._RunLock(out)
    previous = signal.getsignal(signal.SIGTERM)
    loop = None
    try:
        def on_term(signum, frame):
            raise _Stopped(signum)
        if _main_thread():
            signal.signal(signal.SIGTERM, on_term)
        loop = _Loop(config, progress)
        loop.check_inputs()  # a bad model, start file or level: an error before anything is written
        _prepare(out, config, resume, overwrite)
        return loop.run()
    except (_Stopped, KeyboardInterrupt) as exc:
        if isinstance(exc, ActiveInterrupted):
            raise
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        status = exc.status if isinstance(exc, Interrupted) else 128 + int(signum)
        name = "SIGTERM" if status == 143 else "Ctrl-C"
        where = loop.where() if loop is not None else "before the first iteration"
        raise ActiveInterrupted(f"stopped by {name} {where}; every finished stage is in {out}. Continue with: "
                                f"gmnn-active <config> --resume", status) from None
    finally:
        if _main_thread():
            signal.signal(signal.SIGTERM, previous)
        lock.release()


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _prepare(out: Path, config: ActiveConfig, resume: bool, overwrite: bool) -> None:
    from .rundir import RunDirError
    saved = out / "config.json"
    if saved.exists() and not (resume or overwrite):
        raise RunDirError(f"{out} already holds an active-learning run (config.json, state.json): continue it with "
                          f"--resume, or replace it with --overwrite (deletes its iterations and labels), or choose "
                          f"another output_dir")
    if overwrite:
        for path in out.glob("iter_*"):
            shutil.rmtree(path)
        shutil.rmtree(out / "data", ignore_errors=True)
        for name in ("config.json", "state.json", "report.json", "report.md", "report.png"):
            (out / name).unlink(missing_ok=True)
    elif saved.exists():
        changed = _changed(json.loads(saved.read_text()), config_to_dict(config))
        if changed:
            raise ConfigError(f"cannot resume {out}: the config differs from the run's ({'; '.join(changed)}); only "
                              f"{', '.join(sorted(CHANGEABLE))} may change. Restore it, or start again with "
                              f"--overwrite, or another output_dir")
    _write_json(saved, config_to_dict(config))


def _changed(saved: dict, now: dict, prefix: str = "") -> List[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        name = prefix + key
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, name + ".")
        elif a != b and name not in CHANGEABLE:
            out.append(f"{name}: {a!r} then, {b!r} now")
    return out


class _Loop:
    def __init__(self, config: ActiveConfig, progress: bool):
        from .levels import Level
        self.config, self.progress = config, progress
        self.out = Path(config.output_dir)
        self.level = Level.parse(config.level)
        self.iteration, self.stage = 0, "start"
        if config.training.threads:
            import torch
            torch.set_num_threads(config.training.threads)

    def where(self) -> str:
        return f"in iteration {self.iteration} ({self.stage})"

    # -- set-up: everything that can fail does so before the first MD step
    def check_inputs(self):
        from .checkpoint import load_model
        from .data import read_structures
        from .graph import build_graphs
        from .levels import check_level
        from .loading import no_uncertainty_message
        c = self.config
        self.start_model = load_model(c.model, purpose="active learning")
        if not self.start_model.has_uncertainty:
            raise ConfigError(f"model {c.model}: {no_uncertainty_message(3)}")
        starts = read_structures(c.md.start, energy_key="none", forces_key="none")
        build_graphs(starts, self.start_model.atomic_numbers, self.start_model.cutoff)  # unknown elements: an error now
        self.starts = [s.to_atoms() for s in starts]
        if any(a.pbc.any() for a in self.starts) and not c.selection.cluster_molecules:
            raise ConfigError(f"md.start {c.md.start} is periodic, and quantum chemistry labels isolated structures: "
                              "set selection.cluster_molecules: N to label clusters of N whole molecules cut around "
                              "the most uncertain atoms")
        self.topologies = [molecules(a) for a in self.starts]
        check_level(self.level, [self._to_label(a, j, 0) for j, a in enumerate(self.starts)])

    def _to_label(self, frame, trajectory: int, atom: int):
        """What is labelled for a picked frame: the frame, or the cluster around `atom`."""
        s = self.config.selection
        if not s.cluster_molecules:
            return frame
        return cluster_around(frame, self.topologies[trajectory % len(self.starts)], atom, s.cluster_molecules,
                              s.cluster_cutoff)

    def _write_data(self):
        """The data section's structures, read once (units, indices, split) and written in eV, eV/A:
        every iteration's training set is data/train.xyz plus the labels so far."""
        from .dataset import read_splits
        d = self.out / "data"
        if (d / "done").exists():
            return
        splits = read_splits(Config(data=self.config.data, training=self.config.training))
        d.mkdir(parents=True, exist_ok=True)
        for name, structures in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
            if structures:
                _write_frames(d / f"{name}.xyz", [s.to_labelled_atoms() for s in structures])
        (d / "done").touch()

    def model_path(self, k: int) -> Path:
        return Path(self.config.model) if k == 0 else self.out / f"iter_{k - 1}" / "train" / "best.ckpt"

    def run(self) -> Dict:
        c = self.config
        self._write_data()
        k = 0
        while True:
            self.iteration = k
            it = self.out / f"iter_{k}"
            it.mkdir(parents=True, exist_ok=True)
            from .checkpoint import load_model
            model = load_model(self.model_path(k))
            self._set_state("evaluation", k)
            self._evaluate(model, it)
            self._set_state("md", k)
            md = self._md(model, it, k)
            write_report(self.out)
            if md["all_reached"] or k >= c.max_iterations:
                why = "converged" if md["all_reached"] else "max_iterations"
                self._set_state("finished", k, finished=why)
                log.info("%s: %s", self.out, "every trajectory reached the requested length: done" if why == "converged"
                         else f"max_iterations ({c.max_iterations}) reached; raise it and --resume to go on")
                return write_report(self.out)
            self._set_state("selection", k)
            self._select(model, it, k)
            self._set_state("labels", k)
            self._label(it)
            self._set_state("train", k)
            self._train(it, k)
            k += 1

    def _set_state(self, stage: str, k: int, finished: Optional[str] = None):
        self.stage = stage
        state = {"iteration": k, "stage": stage, "model": str(self.model_path(k)),
                 "labels_so_far": labels_before(self.out, k + 1), "finished": finished}
        _write_json(self.out / "state.json", state)

    # -- stages
    def _evaluate(self, model, it: Path):
        path = it / "evaluation.json"
        if path.exists():
            return
        from .data import read_structures
        from .evaluation import error_metrics, predict_graphs
        from .graph import build_graphs
        result = {}
        for name in ("valid", "test"):
            f = self.out / "data" / f"{name}.xyz"
            if f.exists():
                graphs = build_graphs(read_structures(f), model.atomic_numbers, model.cutoff)
                result[name] = error_metrics(predict_graphs(model, graphs, self.config.training.eval_batch_size,
                                                            uncertainty=model.has_uncertainty))
        _write_json(path, result)

    def _md(self, model, it: Path, k: int) -> Dict:
        from .calculator import GMNNCalculator
        from .sampling import explore_md
        m, c = self.config.md, self.config
        d = it / "md"
        if (it / "md.done").exists():
            return json.loads((d / "md.json").read_text())
        d.mkdir(exist_ok=True)
        calc = GMNNCalculator(model, device=c.training.device, uncertainty=True)
        for j in range(m.trajectories):
            if (d / f"traj_{j}.json").exists():
                continue
            run = explore_md(self.starts[j % len(self.starts)], calc, m.steps, m.threshold, m.temperature,
                             m.timestep_fs, m.friction_per_fs, m.sample_every, m.frames_before_stop, m.max_force,
                             m.isolated_distance, seed=[c.seed, k, 0, j], progress=self.progress,
                             label=f"iteration {k}, MD {j + 1}/{m.trajectories}")
            for frame in run.frames:
                frame.info["trajectory"] = j
            _write_frames(d / f"traj_{j}.xyz", run.frames)
            summary = {"trajectory": j, "steps_reached": run.steps_reached, "ps_reached": _ps(run.steps_reached, m),
                       "stop": run.stop, "max_sigma_F": run.max_sigma, "candidates": len(run.frames)}
            _write_json(d / f"traj_{j}.json", summary)
            log.info("iteration %d, MD %d: %s after %d of %d steps (%.3g ps), largest sigma_F %.3g eV/A", k, j,
                     run.stop, run.steps_reached, m.steps, summary["ps_reached"], run.max_sigma)
        runs = [json.loads((d / f"traj_{j}.json").read_text()) for j in range(m.trajectories)]
        reached = [r["ps_reached"] for r in runs]
        result = {"trajectories": runs, "requested_ps": _ps(m.steps, m), "mean_ps": float(np.mean(reached)),
                  "min_ps": float(np.min(reached)), "all_reached": all(r["stop"] == "length" for r in runs),
                  "max_sigma_F": max(r["max_sigma_F"] for r in runs)}
        # candidates: the frames of all trajectories, each geometry once
        from .label_file import geometry_key
        candidates, seen = [], set()
        for j in range(m.trajectories):
            for frame in _read_frames(d / f"traj_{j}.xyz"):
                key = geometry_key(frame.numbers, frame.positions)
                if key not in seen:
                    seen.add(key)
                    candidates.append(frame)
        _write_frames(it / "candidates.xyz", candidates)
        result["candidates"] = len(candidates)
        _write_json(d / "md.json", result)
        (it / "md.done").touch()
        return result

    def _select(self, model, it: Path, k: int):
        from .batch_selection import greedy_selection, random_selection
        if (it / "selection.done").exists():
            return
        s = self.config.selection
        candidates = _read_frames(it / "candidates.xyz")
        if not candidates:
            raise ConfigError(f"iteration {k}: the MD kept no candidate frames (every trajectory broke at its first "
                              f"step?); lower md.temperature or md.timestep_fs, or check md.start")
        u = model.uncertainty
        if s.method == "random":
            picked = random_selection(len(candidates), s.batch, [self.config.seed, k, 1])
            sigma = [float(candidates[i].info["max_sigma_F"]) for i in picked.indices]
        else:
            from .data import Structure
            from .graph import build_graphs
            from .uncertainty import structure_features
            graphs = build_graphs([Structure.from_atoms(a) for a in candidates], model.atomic_numbers, model.cutoff)
            features = structure_features(model, graphs)
            picked = greedy_selection(features["phi"], features["structure"], u.covariance.numpy(),
                                      float(u.regulariser), s.batch)
            sigma = [float(np.sqrt(float(u.force_scale) ** 2 * q + float(u.force_floor) ** 2)) for q in picked.rigidity]
        selected = []
        for i, sig in zip(picked.indices, sigma):
            frame = candidates[i]
            atom = int(np.argmax(frame.arrays["sigma_F"])) if "sigma_F" in frame.arrays else 0
            frame = self._to_label(frame, int(frame.info.get("trajectory", 0)), atom).copy()
            frame.info.update(candidate=int(i), sigma_F_at_pick=sig)
            if self.config.selection.cluster_molecules:
                frame.info["centre_atom"] = atom
            selected.append(frame)
        _write_frames(it / "selected.xyz", selected)
        _write_json(it / "selection.json", {"method": s.method, "candidates": len(candidates),
                                            "indices": picked.indices, "sigma_F_at_pick": sigma})
        (it / "selection.done").touch()

    def _label(self, it: Path):
        if (it / "labels.done").exists():
            return
        selected = _read_frames(it / "selected.xyz")
        for a in selected:  # what the MD recorded is no input to the labels
            a.info.clear()
            a.arrays.pop("sigma_F", None)
        label_structures(selected, it / "labels.xyz", self.level, forces=True, workers=self.config.label_workers,
                         progress=self.progress)
        (it / "labels.done").touch()

    def _train(self, it: Path, k: int):
        from . import rundir
        from .checkpoint import load_model
        from .training import Trainer
        if (it / "train.done").exists():
            return
        c = self.config
        train_dir = it / "train"
        if not (train_dir / "final_metrics.json").exists():
            self._write_training_set(it, k)
            data = DataConfig(train_file=str(it / "train_set.xyz"), valid_file=str(self.out / "data" / "valid.xyz"),
                              test_file=str(self.out / "data" / "test.xyz") if (self.out / "data" / "test.xyz").exists()
                              else None, energy_outlier_limit=c.data.energy_outlier_limit)
            config = Config(output_dir=str(train_dir), data=data, model=self.start_model.options.to_config(),
                            training=copy.deepcopy(c.training)).validate()
            resume = (train_dir / "last.ckpt").exists()
            with rundir.claimed(train_dir, resume=resume, overwrite=not resume):
                if c.retrain == "warm_start":
                    model = load_model(self.model_path(k))
                    model.uncertainty.energy_scale.zero_()  # not a prior: C is rebuilt from all training structures
                    trainer = Trainer(config, model=model, show_progress=self.progress)
                else:
                    trainer = Trainer(config, show_progress=self.progress)
                if resume:
                    trainer.resume()
                trainer.run()
        best = load_model(train_dir / "best.ckpt")
        if not best.has_uncertainty:
            from .uncertainty import CalibrationError
            reason = json.loads((train_dir / "final_metrics.json").read_text()).get("uncertainty", {}).get("reason", "")
            raise CalibrationError(f"{train_dir / 'best.ckpt'}: the re-trained model has no calibrated uncertainty "
                                   f"({reason}); gmnn-active needs one to explore")
        (it / "train.done").touch()

    def _write_training_set(self, it: Path, k: int):
        parts = [(self.out / "data" / "train.xyz").read_text()]
        parts += [(self.out / f"iter_{i}" / "labels.xyz").read_text() for i in range(k + 1)]
        _atomic_write(it / "train_set.xyz", "".join(parts))


def labels_before(out: Path, k: int) -> int:
    """The labels the model of iteration k was trained on (those of iterations 0..k-1)."""
    return sum(len(_read_frames(out / f"iter_{i}" / "labels.xyz")) for i in range(k))


def _ps(steps: int, md: MDConfig) -> float:
    return steps * md.timestep_fs / 1000.0


# ---- files -----------------------------------------------------------------------------------

def _write_frames(path: Path, frames) -> None:
    """extxyz, written whole or not at all (an empty file for no frames)."""
    import io
    import ase.io
    buf = io.StringIO()
    if frames:
        ase.io.write(buf, list(frames), format="extxyz")
    _atomic_write(path, buf.getvalue())


def _read_frames(path: Path):
    import ase.io
    path = Path(path)
    if not path.exists() or not path.read_text().strip():
        return []
    return ase.io.read(path, index=":", format="extxyz")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, payload) -> None:
    _atomic_write(Path(path), json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


# ---- report ----------------------------------------------------------------------------------

def report_rows(out: Path) -> List[Dict]:
    """One row per iteration that has run its MD: labels its model was trained on, MD length
    reached (ps), errors on the validation and test structures, the largest sigma_F seen."""
    rows, k = [], 0
    while (out / f"iter_{k}" / "md.done").exists():
        it = out / f"iter_{k}"
        md = json.loads((it / "md" / "md.json").read_text())
        evaluation = json.loads((it / "evaluation.json").read_text()) if (it / "evaluation.json").exists() else {}
        row = {"iteration": k, "labels": labels_before(out, k), "md_mean_ps": md["mean_ps"], "md_min_ps": md["min_ps"],
               "md_requested_ps": md["requested_ps"], "all_reached": md["all_reached"],
               "trajectories_reached": sum(r["stop"] == "length" for r in md["trajectories"]),
               "trajectories": len(md["trajectories"]), "stops": [r["stop"] for r in md["trajectories"]],
               "max_sigma_F": md["max_sigma_F"], "candidates": md.get("candidates", 0)}
        for name in ("valid", "test"):
            if name in evaluation:
                row[f"{name}_energy_mae"] = evaluation[name]["energy_mae"]
                row[f"{name}_energy_per_atom_mae"] = evaluation[name]["energy_per_atom_mae"]
                row[f"{name}_forces_mae"] = evaluation[name]["forces_mae"]
        if (it / "selection.json").exists():
            row["selected"] = len(json.loads((it / "selection.json").read_text())["indices"])
        rows.append(row)
        k += 1
    return rows


def write_report(out: Path) -> Dict:
    """report.json, report.md and report.png of the loop in `out` (from what is on disk)."""
    from .plotting import active_learning_plot
    out = Path(out)
    rows = report_rows(out)
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").exists() else {}
    report = {"iterations": rows, "finished": state.get("finished"), "labels": rows[-1]["labels"] if rows else 0}
    _write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(rows, state.get("finished")))
    if rows:
        active_learning_plot(rows, out / "report.png")
    return report


def report_markdown(rows: List[Dict], finished: Optional[str]) -> str:
    has_test = any("test_forces_mae" in r for r in rows)
    errors = "test" if has_test else "valid"
    lines = ["# gmnn-active report", ""]
    if rows:
        lines.append(f"Requested MD length: {rows[0]['md_requested_ps']:g} ps per trajectory, "
                     f"{rows[0]['trajectories']} trajectories per iteration. Errors on the {errors} structures; "
                     f"MD length reached: until the largest per-atom sigma_F exceeded the threshold, or the geometry "
                     f"broke.")
        lines.append("")
    lines += [f"| iteration | labels | MD reached, mean (ps) | MD reached, min (ps) | full length | {errors} E MAE (meV/atom) "
              f"| {errors} F MAE (meV/Å) | max σ_F seen (eV/Å) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e, f = r.get(f"{errors}_energy_per_atom_mae", float("nan")), r.get(f"{errors}_forces_mae", float("nan"))
        lines.append(f"| {r['iteration']} | {r['labels']} | {r['md_mean_ps']:.3g} | {r['md_min_ps']:.3g} | "
                     f"{r['trajectories_reached']}/{r['trajectories']} | {1000 * e:.2f} | {1000 * f:.1f} | "
                     f"{r['max_sigma_F']:.3g} |")
    lines.append("")
    if finished == "converged":
        lines.append("Finished: every trajectory of the last iteration reached the requested length under the threshold.")
    elif finished == "max_iterations":
        lines.append("Finished: max_iterations reached (raise it and run with --resume to go on).")
    else:
        lines.append("Not finished (continue with --resume).")
    return "\n".join(lines) + "\n"
