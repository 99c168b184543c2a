"""Liquid ethanol with a gmnn model in LAMMPS, measured (issue 15, item 4): NPT at 298 K and 1 bar,
equilibration, then production with frames dumped; density, intermolecular O-O and O-H(O) radial
distribution functions (first peak, coordination number), hydrogen bonds per molecule and the
molecular self-diffusion coefficient, next to experiment.

    python examples/liquid_ethanol/liquid_md.py --model liquid_ft.pt --name finetuned --d3
    python examples/liquid_ethanol/liquid_md.py --model m.pt --molecules 64 --production-ps 100   # the long run
    python examples/liquid_ethanol/liquid_md.py --analyse-only --out runs/liquid/finetuned

The stages are separate LAMMPS runs, so an interrupted study resumes: equilibration writes
equilibrated.restart, production reads it and writes production.dump and log.production; a stage
whose output is complete is not run again. Results: <out>/liquid.json and liquid.png.

Experiment at 298 K (for the table): density 0.785 g/cm³; self-diffusion about 1.1e-9 m²/s;
shear viscosity 1.074 mPa s (used for the Yeh-Hummer finite-size correction of D).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "examples" / "lammps"))
from build_ethanol_box import ethanol_box  # noqa: E402

ELEMENTS = ["C", "H", "O"]          # LAMMPS atom types 1, 2, 3
TIMESTEP_FS = 0.5
TEMPERATURE_K, PRESSURE_BAR = 298.15, 1.0
EXPERIMENT = {"density_g_cm3": 0.785, "diffusion_m2_s": 1.1e-9, "viscosity_Pa_s": 1.074e-3}


# pair_style gmnn stops the run, naming the step and atoms, when a pair force passes this (eV/Å):
# a model leaving its domain blows up within a few hundred fs, and the stop says so plainly
MAX_FORCE = 20.0


class D3Settings(NamedTuple):
    """D3(BJ) as the liquid runs use it: short hard cutoffs (Å), the pressure they lose added back
    to the barostat's target (gmnn.dispersion.tail_pressure_bar), and D3 computed on the outer
    level of a two-level rRESPA, every `respa` steps of the network (D3 varies slowly)."""
    cutoff: float
    cn_cutoff: float
    respa: int
    tail_bar: float


def deck(data: str, model: str, d3: Optional[D3Settings], steps: int, dump_every: int, restart_in: str,
         restart_out: str, dump: str, seed: int) -> str:
    """The input of one stage; `steps` and `dump_every` count TIMESTEP_FS steps (the network's)."""
    from gmnn.dispersion import lammps_d3_lines
    gmnn_args = f"max_force {MAX_FORCE:g}"
    respa, target_bar = (d3.respa, PRESSURE_BAR - d3.tail_bar) if d3 else (1, PRESSURE_BAR)
    if d3:
        pair = "\n".join(lammps_d3_lines(ELEMENTS, model=model, cutoff=d3.cutoff, cn_cutoff=d3.cn_cutoff,
                                          gmnn_args=gmnn_args))
        if respa > 1:  # the network on level 1 (every TIMESTEP_FS), D3 on level 2
            pair += f"\nrun_style respa 2 {respa} hybrid 1 2"
    else:
        pair = f"pair_style gmnn {gmnn_args}\npair_coeff * * {model} {' '.join(ELEMENTS)}"
    if steps % respa or dump_every % respa:
        raise SystemExit(f"error: the steps ({steps}) and --dump-every ({dump_every}) must be multiples of --respa {respa}")
    start = (f"read_restart {restart_in}" if restart_in else
             f"units metal\natom_style atomic\nboundary p p p\nread_data {data}")
    velocities = "" if restart_in else f"velocity all create {TEMPERATURE_K} {seed} loop geom dist gaussian"
    every = dump_every // respa  # LAMMPS counts outer steps
    output = (f"dump frames all custom {every} {dump} id type xu yu zu\ndump_modify frames sort id"
              if dump else "")
    # the barostat aims at 1 bar minus the D3 pressure the short cutoff loses (tail_bar < 0)
    return f"""# liquid ethanol, NPT {TEMPERATURE_K} K {PRESSURE_BAR} bar (examples/liquid_ethanol/liquid_md.py)
{start}
{pair}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
{velocities}
timestep {respa * TIMESTEP_FS / 1000}
fix npt all npt temp {TEMPERATURE_K} {TEMPERATURE_K} {100 * TIMESTEP_FS / 1000} iso {target_bar:.1f} {target_bar:.1f} {1000 * TIMESTEP_FS / 1000}
variable rho equal density
thermo_style custom step time temp press pe etotal vol v_rho
thermo_modify flush yes
thermo {every}
{output}
run {steps // respa}
write_restart {restart_out}
"""


def run_stage(name: str, text: str, out: Path, ranks: int) -> None:
    (out / f"in.{name}").write_text(text)
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    command = [lmp, "-in", f"in.{name}", "-log", f"log.{name}", "-screen", "none"]
    if ranks > 1:
        command = [shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun"), "-np", str(ranks)] + command
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    print(f"# {name}: {' '.join(command)} (in {out})", flush=True)
    if subprocess.run(command, cwd=out, env=env).returncode != 0:
        sys.exit(f"error: LAMMPS stopped in the {name} stage: see {out / f'log.{name}'}")


def thermo(log: Path) -> dict:
    """The thermo columns of a LAMMPS log (the last run in it) as arrays."""
    lines = log.read_text().splitlines()
    header = max(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "Time"])
    names = lines[header].split()
    rows = []
    for line in lines[header + 1:]:
        fields = line.split()
        if len(fields) != len(names) or not re.match(r"^-?\d", fields[0]):
            break
        rows.append([float(f) for f in fields])
    table = np.array(rows)
    return {name: table[:, k] for k, name in enumerate(names)}


def analyse(out: Path, name: str, dump_every: int, skip_ps: float = 0.0) -> dict:
    from ase.io import read
    from gmnn import md_analysis as md
    frames = production_frames(out)
    dt_ps = dump_every * TIMESTEP_FS / 1000
    skip = int(round(skip_ps / dt_ps))  # thermo lines and frames are both every dump_every steps
    frames = frames[skip:]
    # molecules as built (whole by construction), not as found in MD: a model that breaks bonds
    # shows up as broken molecules below instead of as more molecules
    molecules = md.molecule_ids(read(out / "ethanol.data", format="lammps-data", atom_style="atomic"))
    n_mol = int(molecules.max()) + 1
    broken = [md.broken_molecules(f, molecules) for f in frames]
    log = {k: v[skip:] for k, v in thermo(out / "log.production").items()}
    densities = np.array([md.density_g_cm3(f) for f in frames])
    r_max = min(8.0, 0.5 * min(np.linalg.norm(f.cell.array, axis=1).min() for f in frames) - 0.05)
    o_o = md.radial_distribution(frames, "O", "O", r_max, 160, molecules)
    o_h = md.radial_distribution(frames, "O", hydroxyl_hydrogens(frames[0]), r_max, 160, molecules)
    bonds = md.hydrogen_bonds(frames, molecules)
    centres = md.unwrapped_centres(frames, molecules)
    diffusion = md.self_diffusion(centres, dt_ps)
    side = float(np.mean([f.get_volume() for f in frames])) ** (1 / 3)
    sigma = force_uncertainty(out, frames)
    result = {"name": name, "molecules": n_mol, "atoms": len(frames[0]), "frames": len(frames),
              "broken_molecules_max": int(max(broken)), "broken_molecules_last_frame": int(broken[-1]),
              "production_ps": (len(frames) - 1) * dt_ps, "temperature_K_mean": float(np.mean(log["Temp"])),
              "density_g_cm3": float(densities.mean()), "density_g_cm3_std": float(densities.std()),
              "density_g_cm3_log": float(np.mean(log["v_rho"])),
              "rdf_OO": dict(zip(("peak_A", "first_minimum_A", "coordination"), o_o.first_peak())),
              "rdf_OH": dict(zip(("peak_A", "first_minimum_A", "coordination"), o_h.first_peak())),
              "hbonds_per_molecule": float(2 * bonds.mean() / n_mol),
              "diffusion_m2_s": diffusion.coefficient_m2_s,
              "diffusion_m2_s_finite_size_corrected": diffusion.corrected(TEMPERATURE_K, EXPERIMENT["viscosity_Pa_s"], side),
              "diffusion_fit_ps": list(diffusion.fit_window_ps), "box_A": side,
              "force_uncertainty_max_eV_A": sigma, "experiment": EXPERIMENT}
    (out / "liquid.json").write_text(json.dumps(result, indent=2))
    plot(out / "liquid.png", name, log, o_o, o_h, diffusion)
    return result


def force_uncertainty(out: Path, frames, n_frames: int = 40) -> Optional[float]:
    """The largest per-atom force uncertainty sigma_F (eV/Å) of the model (study.json's) over
    `n_frames` evenly spaced production frames; None for a model without one. Computed here, not in
    LAMMPS: fix pair, which reads sigma_F there, does not run under rRESPA."""
    from gmnn.loading import load
    model = json.loads((out / "study.json").read_text())["model"] if (out / "study.json").exists() else None
    if model is None or not getattr(load(model), "has_uncertainty", False):
        return None
    return max(float(s.max()) for s in atom_uncertainties(model, frames[::max(1, len(frames) // n_frames)]))


def production_frames(out: Path) -> list:
    """The frames of a study's production dump, with their elements."""
    from ase.io import read
    from gmnn import md_analysis as md
    frames = read(out / "production.dump", ":", format="lammps-dump-text")
    md.symbols_from_types(frames, ELEMENTS)
    return frames


def atom_uncertainties(model, frames) -> list:
    """sigma_F (eV/Å) of every atom of each frame, by the model's ASE calculator."""
    from gmnn.calculator import GMNNCalculator
    calc = GMNNCalculator(str(model))
    sigma = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.get_forces()
        sigma.append(np.array(calc.results["forces_uncertainty"]))
    return sigma


def hydroxyl_hydrogens(atoms) -> list:
    """The H nearest each O (its own hydroxyl H in an intact ethanol)."""
    symbols = atoms.get_chemical_symbols()
    hydrogens = [k for k, s in enumerate(symbols) if s == "H"]
    return [hydrogens[int(np.argmin(atoms.get_distances(o, hydrogens, mic=True)))]
            for o, s in enumerate(symbols) if s == "O"]


def plot(path: Path, name: str, log: dict, o_o, o_h, diffusion) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(log["Time"], log["v_rho"])
    axes[0].axhline(EXPERIMENT["density_g_cm3"], color="k", ls="--", label="experiment 298 K")
    axes[0].set(xlabel="time (ps)", ylabel="density (g/cm³)", title=f"{name}: NPT production")
    axes[0].legend()
    axes[1].plot(o_o.r, o_o.g, label="O-O")
    axes[1].plot(o_h.r, o_h.g, label="O-H(O)")
    axes[1].set(xlabel="r (Å)", ylabel="g(r), intermolecular", title="radial distribution functions")
    axes[1].legend()
    axes[2].plot(diffusion.lag_ps, diffusion.msd_A2)
    lo, hi = diffusion.fit_window_ps
    axes[2].axvspan(lo, hi, color="gray", alpha=0.2, label=f"fit: D = {diffusion.coefficient_m2_s:.2e} m²/s")
    axes[2].set(xlabel="lag (ps)", ylabel="MSD of molecular centres (Å²)", title="self-diffusion")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def d3_settings(data: Path, args) -> D3Settings:
    """The D3 settings of a study, its tail pressure measured on the starting box once (d3.json keeps
    it, so a resumed stage has the barostat target of the first)."""
    from ase.io import read
    from gmnn.dispersion import tail_pressure_bar
    saved = data.parent / "d3.json"
    d3 = D3Settings(**json.loads(saved.read_text())) if saved.exists() else None
    if d3 is None or (d3.cutoff, d3.cn_cutoff, d3.respa) != (args.d3_cutoff, args.d3_cn_cutoff, args.respa):
        box = read(data, format="lammps-data", atom_style="atomic")
        box.set_chemical_symbols([ELEMENTS[t - 1] for t in box.arrays["type"]])
        d3 = D3Settings(args.d3_cutoff, args.d3_cn_cutoff, args.respa,
                        tail_pressure_bar(box, args.d3_cutoff, args.d3_cn_cutoff))
        saved.write_text(json.dumps(d3._asdict(), indent=2))
    print(f"# D3(BJ) cut at {d3.cutoff:g}/{d3.cn_cutoff:g} Å loses {d3.tail_bar:.0f} bar: barostat target "
          f"{PRESSURE_BAR - d3.tail_bar:.0f} bar; D3 every {d3.respa} steps", flush=True)
    return d3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="exported gmnn model file (gmnn-export)")
    p.add_argument("--name", default="model")
    p.add_argument("--out", default=None, help="study directory (default runs/liquid/<name>)")
    p.add_argument("--molecules", type=int, default=125, help="125 molecules = 1125 atoms")
    p.add_argument("--d3", action="store_true", help="add D3(BJ) for PBE (pair_style hybrid/overlay)")
    p.add_argument("--d3-cutoff", type=float, default=12.0,
                   help="Å (gmnn.dispersion recommends 30; the pressure lost is added back to the barostat's target)")
    p.add_argument("--d3-cn-cutoff", type=float, default=10.0, help="Å, D3 coordination numbers")
    p.add_argument("--respa", type=int, default=4, help="D3 every this many steps of the network (rRESPA; 1: every step)")
    p.add_argument("--equilibrate-ps", type=float, default=10.0)
    p.add_argument("--production-ps", type=float, default=20.0)
    p.add_argument("--dump-every", type=int, default=100, help="steps between frames (100 = 50 fs)")
    p.add_argument("--skip-ps", type=float, default=0.0, help="production time left out of the analysis")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--seed", type=int, default=4928459)
    p.add_argument("--analyse-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / "liquid" / args.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        if not args.model:
            p.error("--model is needed to run MD")
        model = str(Path(args.model).resolve())
        (out / "study.json").write_text(json.dumps({"model": model}))
        data = out / "ethanol.data"
        if not data.exists():
            from ase.io import write
            write(data, ethanol_box(args.molecules, density=EXPERIMENT["density_g_cm3"]), format="lammps-data",
                  specorder=ELEMENTS, atom_style="atomic", masses=True)
        steps = lambda ps: int(round(ps * 1000 / TIMESTEP_FS))
        d3 = d3_settings(data, args) if args.d3 else None
        if not (out / "equilibrated.restart").exists():
            run_stage("equilibration", deck(str(data), model, d3, steps(args.equilibrate_ps),
                                            args.dump_every, "", "equilibrated.restart", "", args.seed), out, args.ranks)
        if not (out / "production.restart").exists():
            run_stage("production", deck(str(data), model, d3, steps(args.production_ps),
                                         args.dump_every, "equilibrated.restart", "production.restart",
                                         "production.dump", args.seed), out, args.ranks)
    result = analyse(out, args.name, args.dump_every, args.skip_ps)
    print(json.dumps({k: v for k, v in result.items() if k != "experiment"}, indent=2))


if __name__ == "__main__":
    main()
