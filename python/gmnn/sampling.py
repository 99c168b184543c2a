"""Configurations for labelling, drawn by Langevin MD: with any ASE calculator (xTB or gmnn;
gmnn-sample), or with a calibrated gmnn model until it leaves its domain (`explore_md`, the MD
of gmnn-active)."""
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np
from ase import Atoms, units


def make_calculator(name: str):
    """gfn2-xtb, gfn1-xtb (tblite), mmff94 (RDKit; for drawing configurations only), or a gmnn model."""
    if name.lower() == "mmff94":
        from .mmff import MMFF94
        return MMFF94()
    if name.lower() in ("gfn2-xtb", "gfn1-xtb"):
        from tblite.ase import TBLite
        return TBLite(method="GFN2-xTB" if name.lower() == "gfn2-xtb" else "GFN1-xTB", verbosity=0)
    from .calculator import GMNNCalculator
    return GMNNCalculator(name)


def sample_md(start, out, calculator="gfn2-xtb", temperature=300.0, timestep_fs=0.5, friction_per_fs=0.01,
              samples=100, stride=20, equilibration=200, seed=0) -> int:
    """gmnn-sample's MD (`md_frames`) from `start` (a structure file, whose first frame is used, or
    Atoms), written to `out` (extxyz); returns the number of frames."""
    import ase.io
    atoms = start if isinstance(start, Atoms) else ase.io.read(start, index=0)
    frames = md_frames(atoms, calculator, temperature, timestep_fs, friction_per_fs, samples, stride, equilibration,
                       seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out, frames, format="extxyz")
    return len(frames)


def md_frames(atoms: Atoms, calculator="gfn2-xtb", temperature=300.0, timestep_fs=0.5, friction_per_fs=0.01,
              samples=100, stride=20, equilibration=200, seed=0, progress=True) -> List[Atoms]:
    """Langevin MD from `atoms` (velocities drawn at `temperature` with `seed`): `samples` frames,
    `stride` steps apart after `equilibration` steps, each keeping the info of `atoms` plus
    sampler, temperature_K, md_step and seed."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tqdm import tqdm
    atoms = atoms.copy()
    atoms.calc = make_calculator(calculator) if isinstance(calculator, str) else calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature,
                   friction=friction_per_fs / units.fs, rng=rng)
    dyn.run(equilibration)
    frames = []
    for k in tqdm(range(samples), desc="sampling", unit="conf", disable=not progress):
        dyn.run(stride)
        frame = atoms.copy()
        frame.info.update({"sampler": str(calculator), "temperature_K": temperature, "md_step": dyn.nsteps,
                           "seed": seed})
        frames.append(frame)
    return frames


class Exploration(NamedTuple):
    """An MD run of gmnn-active: the frames kept as candidates and how far it got."""
    frames: List[Atoms]   # each with info md_step, max_sigma_F and arrays sigma_F
    steps_reached: int    # the last step at which the model was still sure (and the geometry whole)
    stop: str             # "length", "uncertainty" or "broken: <why>"
    max_sigma: float      # the largest per-atom sigma_F seen (eV/A)


def explore_md(atoms: Atoms, calculator, steps: int, threshold: float, temperature=300.0, timestep_fs=0.5,
               friction_per_fs=0.01, sample_every=100, frames_before_stop=5, max_force=50.0,
               isolated_distance: Optional[float] = 2.0, seed=0, progress=False, label="md") -> Exploration:
    """Langevin MD from `atoms` with `calculator` (one that sets results["forces_uncertainty"]:
    a GMNNCalculator of a calibrated model) for `steps` steps, or until the largest per-atom
    sigma_F exceeds `threshold` (the model leaves its domain) or the geometry breaks (a force
    above `max_force` eV/A or not finite, or an atom with no neighbour within
    `isolated_distance` A). Kept: a frame every `sample_every` steps (not the start) and, after a
    stop, the last `frames_before_stop` frames before it, and the frame that crossed the
    threshold (not a broken one)."""
    from collections import deque
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tqdm import tqdm
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=friction_per_fs / units.fs,
                   rng=rng)
    kept, recent, max_sigma = [], deque(maxlen=max(frames_before_stop, 1)), 0.0
    bar = tqdm(total=steps, desc=label, unit="step", disable=not progress, mininterval=1.0, dynamic_ncols=True,
               leave=False)
    step, stop = 0, None
    try:
        while True:
            sigma, problem = _check(atoms, max_force, isolated_distance)
            if problem is None and sigma.max() > threshold:
                problem = "uncertainty"
            if np.all(np.isfinite(sigma)):
                max_sigma = max(max_sigma, float(sigma.max()))
            if problem is not None:
                stop = problem
                last = kept[-1].info["md_step"] if kept else 0  # the start is no candidate
                kept.extend(f for f in list(recent) if f.info["md_step"] > last)
                if problem == "uncertainty":
                    kept.append(_frame(atoms, step, sigma))
                break
            frame = _frame(atoms, step, sigma)
            if step and step % sample_every == 0:
                kept.append(frame)
            if frames_before_stop:
                recent.append(frame)
            if step == steps:
                stop = "length"
                break
            dyn.run(1)
            step += 1
            bar.update(1)
    finally:
        bar.close()
    reached = step if stop == "length" else max(step - 1, 0)
    return Exploration(kept, reached, stop, max_sigma)


def _check(atoms: Atoms, max_force: float, isolated_distance: Optional[float]):
    """(per-atom sigma_F, None or why the geometry is broken) at the current positions."""
    forces = atoms.get_forces()
    sigma = np.asarray(atoms.calc.results["forces_uncertainty"], dtype=np.float64)
    if not (np.all(np.isfinite(forces)) and np.all(np.isfinite(sigma))):
        return sigma, "broken: forces or uncertainty not finite"
    largest = float(np.max(np.linalg.norm(forces, axis=1))) if len(forces) else 0.0
    if largest > max_force:
        return sigma, f"broken: force {largest:.3g} eV/A > {max_force:g}"
    if isolated_distance and len(atoms) > 1:
        from .neighbors import neighbor_list
        nl = neighbor_list(atoms.positions, isolated_distance, atoms.cell.array, atoms.pbc)
        alone = np.bincount(nl.centers, minlength=len(atoms)) == 0
        if alone.any():
            k = int(np.argmax(alone))
            return sigma, f"broken: atom {k} ({atoms.get_chemical_symbols()[k]}) has no neighbour within " \
                          f"{isolated_distance:g} A"
    return sigma, None


def _frame(atoms: Atoms, step: int, sigma: np.ndarray) -> Atoms:
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info.update(md_step=int(step), max_sigma_F=float(sigma.max()))
    frame.arrays["sigma_F"] = np.array(sigma, dtype=np.float64)
    return frame
