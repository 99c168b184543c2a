"""Long-run stability of a fine-tuned model: NVE MD of ethanol molecules in LAMMPS.

Eight ethanol molecules in a periodic box, pair_style gmnn with the given exported model, NVT
at the chosen temperature, then NVE for --ps picoseconds. The models are trained on isolated
molecules (rMD17 and the PBE/CCSD(T) sets here): a dimer is outside their domain. So the
molecules are independent replicas: `neigh_modify exclude molecule/inter all` removes every
intermolecular pair from the neighbour list. (Without it the molecules of this dilute gas meet
after a few ps, and the models, which never saw two molecules in contact, fail there: measured,
a first contact at 6.3 ps led to a runaway at 7 ps. `--interacting` runs that case.)
Reported: atoms kept, molecules intact (every covalent bond of the start stays shorter than
1.5x its starting length, checked in snapshots every 0.5 ps), the temperature range and the
total-energy drift (slope of a straight-line fit) in eV per ns per atom. A `max_force` cap
stops the run if the structure explodes instead of writing garbage.

    python examples/transfer_learning/long_nve.py \
        --model examples/transfer_learning/models/ethanol_ccsdt_energy_n50.pt --ps 100

Writes <out>/long_nve.json and <out>/long_nve.png. 100 ps (200 000 steps of 0.5 fs, 72 atoms)
takes about 10 minutes on one core.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lammps"))

from build_ethanol_box import ELEMENTS, ethanol_box, write_molecular_data  # noqa: E402

INPUT = """units metal
atom_style full
boundary p p p
read_data {data}
{exclude}
pair_style gmnn max_force {max_force}
pair_coeff * * {model} {elements}
timestep {dt}
velocity all create {temperature} {seed} mom yes rot yes dist gaussian
fix thermostat all nvt temp {temperature} {temperature} 0.05
run {nvt_steps}
unfix thermostat
reset_timestep 0
fix nve all nve
thermo {thermo_every}
thermo_style custom step time temp pe etotal atoms
thermo_modify format float %.12g lost error
dump snapshots all custom {dump_every} snapshots.dump id type x y z
dump_modify snapshots sort id
run {nve_steps}
"""

BOND_STRETCH_LIMIT = 1.5  # a covalent bond longer than this times its start length is broken


def read_thermo(log: Path) -> dict[str, np.ndarray]:
    """The thermo table of the last run in a LAMMPS log (header line starts with 'Step')."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:1] == ["Step"])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) != len(header):
            break
        try:
            rows.append([float(x) for x in parts])
        except ValueError:
            break
    table = np.array(rows)
    return {name: table[:, i] for i, name in enumerate(header)}


def read_snapshots(dump: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions (frames, atoms, 3) and box lengths (frames, 3) of an orthogonal-box dump."""
    frames, boxes = [], []
    with open(dump) as f:
        while f.readline():  # ITEM: TIMESTEP
            f.readline()
            f.readline()  # ITEM: NUMBER OF ATOMS
            n = int(f.readline())
            f.readline()  # ITEM: BOX BOUNDS
            bounds = [list(map(float, f.readline().split()[:2])) for _ in range(3)]
            f.readline()  # ITEM: ATOMS id type x y z
            rows = np.array([list(map(float, f.readline().split())) for _ in range(n)])
            frames.append(rows[np.argsort(rows[:, 0]), 2:5])
            boxes.append([hi - lo for lo, hi in bounds])
    return np.array(frames), np.array(boxes)


def covalent_bonds(atoms) -> np.ndarray:
    """Pairs (i, j) bonded in the starting structure: closer than 1.2x the sum of covalent radii."""
    from ase.neighborlist import natural_cutoffs, neighbor_list
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    keep = i < j
    return np.stack([i[keep], j[keep]], axis=1)


def bond_lengths(positions: np.ndarray, box: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    d = positions[bonds[:, 1]] - positions[bonds[:, 0]]
    d -= box * np.round(d / box)  # minimum image: molecules may sit across the box boundary
    return np.linalg.norm(d, axis=1)


def run(model: Path, out: Path, ps: float, dt_fs: float = 0.5, temperature: float = 300.0, nvt_ps: float = 2.0,
        molecules: int = 8, max_force: float = 20.0, seed: int = 4928, lmp: str | None = None,
        independent_molecules: bool = True) -> dict:
    out, model = out.resolve(), model.resolve()
    out.mkdir(parents=True, exist_ok=True)
    atoms = ethanol_box(molecules, density=0.005, min_distance=6.0, seed=1)
    data = out / "ethanol.data"
    write_molecular_data(atoms, data, atoms_per_molecule=len(atoms) // molecules)
    nve_steps = int(round(ps * 1000 / dt_fs))
    (out / "in.long_nve").write_text(INPUT.format(
        data=data, model=model, elements=" ".join(ELEMENTS), dt=dt_fs / 1000, temperature=temperature, seed=seed,
        exclude="neigh_modify exclude molecule/inter all" if independent_molecules else "",
        max_force=max_force, nvt_steps=int(round(nvt_ps * 1000 / dt_fs)), nve_steps=nve_steps,
        thermo_every=max(1, int(round(100 / dt_fs))), dump_every=max(1, int(round(500 / dt_fs)))))
    lmp = lmp or str(Path(sys.executable).parent / "lmp")
    proc = subprocess.run([lmp, "-in", "in.long_nve", "-log", "log.lammps", "-screen", "none"], cwd=out,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = (out / "log.lammps").read_text()
    if proc.returncode != 0:
        errors = [line for line in log.splitlines() if "ERROR" in line]
        raise RuntimeError(f"LAMMPS stopped (exit {proc.returncode}): {errors[-1] if errors else 'see ' + str(out)}")

    thermo = read_thermo(out / "log.lammps")
    t_ps, etotal, n_atoms = thermo["Time"], thermo["TotEng"], len(atoms)
    slope_ev_per_ps = np.polyfit(t_ps, etotal, 1)[0]
    positions, boxes = read_snapshots(out / "snapshots.dump")
    bonds = covalent_bonds(atoms)
    start = bond_lengths(atoms.positions, np.diag(atoms.cell), bonds)
    stretch = np.array([bond_lengths(p, b, bonds) / start for p, b in zip(positions, boxes)])
    result = {
        "model": str(model), "atoms": n_atoms, "molecules": molecules, "timestep_fs": dt_fs,
        "independent_molecules": independent_molecules,
        "nve_ps": float(t_ps[-1] - t_ps[0]), "steps": nve_steps, "start_temperature_K": temperature,
        "atoms_at_end": int(thermo["Atoms"][-1]),
        "temperature_K": {"mean": float(thermo["Temp"].mean()), "min": float(thermo["Temp"].min()),
                          "max": float(thermo["Temp"].max())},
        "energy_drift_eV_per_ns_per_atom": float(slope_ev_per_ps * 1000 / n_atoms),
        "energy_fluctuation_eV_per_atom": float(np.std(etotal) / n_atoms),
        "max_energy_excursion_eV_per_atom": float(np.max(np.abs(etotal - etotal[0])) / n_atoms),
        "max_bond_stretch": float(stretch.max()), "bonds_checked": int(len(bonds)),
        "molecules_intact": bool(stretch.max() < BOND_STRETCH_LIMIT),
        "snapshots": int(len(positions)),
        "ns_per_day": _performance(log),
    }
    (out / "long_nve.json").write_text(json.dumps(result, indent=2))
    _plot(t_ps, etotal, thermo["Temp"], n_atoms, out / "long_nve.png", result)
    return result


def _performance(log: str) -> float | None:
    lines = [line for line in log.splitlines() if line.startswith("Performance:")]
    return float(lines[-1].split()[1]) if lines else None


def _plot(t_ps, etotal, temp, n_atoms, path: Path, result: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_e, ax_t) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax_e.plot(t_ps, (etotal - etotal[0]) / n_atoms * 1000, lw=0.8)
    ax_e.set_ylabel("E_total - E_total(0)\n(meV/atom)")
    ax_e.set_title(f"NVE, {result['atoms']} atoms, dt {result['timestep_fs']} fs: drift "
                   f"{result['energy_drift_eV_per_ns_per_atom'] * 1000:.3f} meV/ns/atom")
    ax_t.plot(t_ps, temp, lw=0.8, color="tab:red")
    ax_t.set_ylabel("T (K)")
    ax_t.set_xlabel("time (ps)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=HERE / "models" / "ethanol_ccsdt_energy_n50.pt")
    p.add_argument("--out", type=Path, default=Path("runs/long_nve"))
    p.add_argument("--ps", type=float, default=100.0, help="NVE length in ps")
    p.add_argument("--dt-fs", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--max-force", type=float, default=20.0, help="eV/Å; larger forces stop the run")
    p.add_argument("--interacting", action="store_true", help="let the molecules interact (outside the models' data)")
    args = p.parse_args()
    result = run(args.model, args.out, args.ps, args.dt_fs, args.temperature, max_force=args.max_force,
                 independent_molecules=not args.interacting)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
