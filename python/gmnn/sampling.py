"""Configurations for labelling, drawn by Langevin MD with any ASE calculator (xTB or gmnn)."""
from pathlib import Path

import numpy as np
from ase import units


def make_calculator(name: str):
    if name.lower() in ("gfn2-xtb", "gfn1-xtb"):
        from tblite.ase import TBLite
        return TBLite(method="GFN2-xTB" if name.lower() == "gfn2-xtb" else "GFN1-xTB", verbosity=0)
    from .calculator import GMNNCalculator
    return GMNNCalculator(name)


def sample_md(start, out, calculator="gfn2-xtb", temperature=300.0, timestep_fs=0.5, friction_per_fs=0.01,
              samples=100, stride=20, equilibration=200, seed=0) -> int:
    import ase.io
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    atoms = ase.io.read(start, index=0)
    atoms.calc = make_calculator(calculator)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature,
                   friction=friction_per_fs / units.fs, rng=rng)
    dyn.run(equilibration)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    from tqdm import tqdm
    for k in tqdm(range(samples), desc="sampling", unit="conf"):
        dyn.run(stride)
        frame = atoms.copy()
        frame.info.update({"sampler": str(calculator), "temperature_K": temperature, "md_step": dyn.nsteps,
                           "seed": seed})
        frames.append(frame)
    ase.io.write(out, frames, format="extxyz")
    return len(frames)
