"""Vibrational check of the transfer-learning models, as in the paper: LAMMPS MD
(pair_style gmnn) of ethanol molecules with each model, VDOS from the velocity
autocorrelation (gmnn.spectrum), C-H and O-H stretch band positions.

Eight molecules in a large periodic box, as independent replicas: the models know isolated
molecules only, so intermolecular pairs are excluded from the neighbour list (`neigh_modify
exclude molecule/inter all`; see long_nve.py: molecules that meet in the gas otherwise find
holes in the dimer region, which no model here was trained on). 1 ps NVT at 300 K, then NVE
with velocities dumped every fs.

    python examples/transfer_learning/vibrations.py [--out runs/transfer_learning] [--nve-ps 5]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lammps"))

from build_ethanol_box import ELEMENTS, ethanol_box, write_molecular_data  # noqa: E402

from gmnn import export_model  # noqa: E402
from gmnn.spectrum import band_positions, plot_spectra, read_lammps_velocities, vdos  # noqa: E402

MODELS = {  # label -> run folder under --out, in the order they are plotted
    "pre-trained (PBE)": "pretrain",
    "scratch, CCSD(T) energies": "n{n}/scratch_energy",
    "fine-tuned, CCSD(T) energies": "n{n}/finetune_energy",
    "fine-tuned, CCSD(T) forces": "n{nf}/finetune_forces",
}

INPUT = """units metal
atom_style full
boundary p p p
read_data {data}
neigh_modify exclude molecule/inter all
pair_style gmnn
pair_coeff * * {model} {elements}
timestep {dt}
velocity all create 300.0 {seed} mom yes rot yes dist gaussian
fix thermostat all nvt temp 300.0 300.0 0.05
run {nvt_steps}
unfix thermostat
fix nve all nve
thermo 1000
thermo_style custom step temp pe etotal
dump vel all custom {stride} {dump} id type mass vx vy vz
dump_modify vel sort id
run {nve_steps}
"""


def run_md(model_pt: Path, workdir: Path, nve_ps: float, dt_fs: float = 0.5, stride: int = 2) -> Path:
    workdir, model_pt = workdir.resolve(), model_pt.resolve()  # LAMMPS runs inside workdir
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "ethanol8.data"
    write_molecular_data(ethanol_box(8, density=0.005, min_distance=6.0, seed=1), data)
    dump = workdir / "velocities.dump"
    (workdir / "in.vib").write_text(INPUT.format(
        data=data, model=model_pt, elements=" ".join(ELEMENTS), dt=dt_fs / 1000.0, seed=4928,
        nvt_steps=int(1000 / dt_fs), nve_steps=int(nve_ps * 1000 / dt_fs), stride=stride, dump=dump))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(Path(sys.executable).parent / "lmp"), "-in", "in.vib", "-log", "log.lammps", "-screen", "none"],
                   cwd=workdir, env=env, check=True)
    return dump


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/transfer_learning")
    p.add_argument("--n", type=int, default=50, help="fine-tuning set size whose models are compared")
    p.add_argument("--forces-n", type=int, default=10, help="set size of the fine-tune-with-forces model")
    p.add_argument("--nve-ps", type=float, default=5.0)
    args = p.parse_args()
    out = Path(args.out)
    spectra, bands = {}, {}
    for label, folder in MODELS.items():
        ckpt = out / folder.format(n=args.n, nf=args.forces_n) / "best.ckpt"
        if not ckpt.exists():
            print(f"skip {label}: {ckpt} not found")
            continue
        workdir = out / "vibrations" / folder.format(n=args.n, nf=args.forces_n).replace("/", "_")
        pt = export_model(ckpt, workdir / "model.pt", dtype="float32")
        dump = workdir / "velocities.dump"
        if not dump.exists():
            dump = run_md(pt, workdir, args.nve_ps)
        v, _, masses = read_lammps_velocities(dump)
        spectra[label] = vdos(v, dt_fs=1.0, masses=masses)
        bands[label] = band_positions(spectra[label])
        print(f"{label}: " + ", ".join(f"{k} {v:.0f} cm^-1" for k, v in bands[label].items()), flush=True)
    plot_spectra(spectra, out / "vdos.png", title="Ethanol VDOS, LAMMPS NVE at ~300 K")
    (out / "bands.json").write_text(json.dumps(bands, indent=2))
    print(f"wrote {out / 'vdos.png'} and {out / 'bands.json'}")


if __name__ == "__main__":
    main()
