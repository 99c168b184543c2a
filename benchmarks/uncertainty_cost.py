"""Cost of pair_style gmnn's per-atom force uncertainty in LAMMPS MD: the same NVE run without
it, with `uncertainty yes` (every step), and with `fix pair N gmnn uncertainty 1` (every Nth
step only), as microseconds per atom and step and as ratios to the run without it.

    python benchmarks/uncertainty_cost.py                          # diamond + ethanol, ~1000 atoms, 1 rank
    python benchmarks/uncertainty_cost.py --systems diamond --dtypes float32 --sizes 1000 10000

Models: the untrained default architecture (360 features, 512-512, r_c 5 Å; the speed does not
depend on the weights), calibrated (gmnn.uncertainty.fit) on 30 + 10 labelled structures of the
shipped data (carbon: data/carbon_gap_100.xyz, ethanol: data/rmd17_ethanol_100.xyz), exported
in each dtype. What the uncertainty adds per atom: the last layer's input is kept (phi, 513
values), and sigma_F = beta |W^T phi| is one 513 x 513 float64 product (whatever the model
dtype); one forward and one backward as without it.

Each case is lammps_md.py's timed NVE deck (warm-up, then `run N pre no post no`, LAMMPS' loop
time) with these pair lines:
- off:         pair_style gmnn
- every step:  pair_style gmnn uncertainty yes  +  fix u all pair 1 gmnn uncertainty 0
- every N:     pair_style gmnn  +  fix u all pair N gmnn uncertainty 1   (--every N, default 10)
The three run back to back, --repeats times (default 3; each round in another order), and each
keeps its fastest run: the machine is shared, and the ratios measured this way are what counts.

Writes benchmarks/results/uncertainty_cost.json and .md and prints the table.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import lammps_md  # noqa: E402  (build_system, run_case, steps_for, machine_info)

DATA = {"diamond": (ROOT / "data" / "carbon_gap_100.xyz", None),
        "liquid": (ROOT / "data" / "carbon_gap_100.xyz", None),
        "ethanol": (ROOT / "data" / "rmd17_ethanol_100.xyz", "kcal/mol")}
MODES = ("off", "every step", "every N")


def calibrated_models(system: str, elements, dtypes, workdir: Path) -> dict:
    """{dtype: model file} of the default architecture for `elements`, calibrated on the
    system's labelled data (the values do not matter here, only that the file has them)."""
    import torch
    import gmnn
    from gmnn import uncertainty
    from gmnn.data import read_structures
    from gmnn.graph import build_graphs
    torch.manual_seed(0)
    model = gmnn.build_model(list(elements), dtype="float64")
    path, unit = DATA[system]
    graphs = build_graphs(read_structures(path, energy_unit=unit)[:40], model.atomic_numbers, model.cutoff)
    uncertainty.fit(model, graphs[:30], graphs[30:])
    assert model.has_uncertainty
    tag = "".join(elements)
    return {dt: str(gmnn.export_model(model, workdir / f"gmnn_llpr_{tag}_{dt}.pt", dtype=dt))
            for dt in dtypes}


def pair_lines(mode: str, model: str, elements, every: int) -> str:
    base = lammps_md.gmnn_pair(model, elements, "uncertainty yes" if mode == "every step" else "")
    if mode == "every step":
        return base + "\nfix u all pair 1 gmnn uncertainty 0"
    if mode == "every N":
        return base + f"\nfix u all pair {every} gmnn uncertainty 1"
    return base


def table(rows, every: int) -> str:
    out = ["| system | atoms | ranks | dtype | steps | off µs/atom/step | every step | ratio | "
           f"every {every} steps | ratio |",
           "|:---|---:|---:|:---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        us = r["us_per_atom_step"]
        out.append(f"| {r['system']} | {r['atoms']} | {r['ranks']} | {r['dtype']} | {r['steps']} | "
                   f"{us['off']:.1f} | {us['every step']:.1f} | {r['ratio_every_step']:.3f} | "
                   f"{us['every N']:.1f} | {r['ratio_every_n']:.3f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["diamond", "ethanol"], choices=sorted(DATA))
    p.add_argument("--sizes", type=int, nargs="+", default=[1000], help="approximate atom counts")
    p.add_argument("--ranks", type=int, nargs="+", default=[1])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--every", type=int, default=10, help="N of the fix pair trigger case")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three cases; each keeps its fastest")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (default: lammps_md.py's, rounded up to a multiple of --every, >= 2x it)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per lmp run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "uncertainty_cost.json"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    lmp, mpirun = lammps_md.lammps_executables()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gmnn_uncertainty_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)

    info = lammps_md.machine_info()
    rows, t_start = [], time.time()
    for system in args.systems:
        models = None
        for size in args.sizes:
            data, elements, temperature, _ = lammps_md.build_system(system, size, workdir)
            if models is None:
                models = calibrated_models(system, elements, args.dtypes, workdir)
            for ranks in args.ranks:
                for dtype in args.dtypes:
                    steps = args.steps or lammps_md.steps_for(size, dtype)
                    steps = max(2 * args.every, -(-steps // args.every) * args.every)
                    warmup = 2 if size < 5000 else 0
                    best = {}
                    for round_ in range(args.repeats):
                        # a different order each round: the load of a shared machine drifts
                        for mode in MODES[round_ % 3:] + MODES[:round_ % 3]:
                            print(f"# {system} ~{size} atoms, {dtype}, {ranks} rank(s), uncertainty {mode}, "
                                  f"round {round_ + 1}, {steps} steps ({time.time() - t_start:.0f} s so far) ...",
                                  flush=True)
                            r = lammps_md.run_case(lmp, mpirun, data, pair_lines(mode, models[dtype], elements,
                                                                                   args.every),
                                                   temperature, ranks, 1, steps, warmup, workdir, args.timeout)
                            print(f"  {r['us_per_atom_step']:.1f} µs/atom/step", flush=True)
                            if mode not in best or r["us_per_atom_step"] < best[mode]["us_per_atom_step"]:
                                best[mode] = r
                    us = {mode: best[mode]["us_per_atom_step"] for mode in MODES}
                    rows.append({"system": system, "atoms": best["off"]["atoms"], "ranks": ranks, "dtype": dtype,
                                 "steps": steps, "every": args.every, "us_per_atom_step": us,
                                 "ratio_every_step": us["every step"] / us["off"],
                                 "ratio_every_n": us["every N"] / us["off"], "runs": best})

    payload = {"machine": info, "repeats": args.repeats, "every": args.every,
               "models": "untrained default architecture (512-512, r_c 5 Å), calibrated on 30 + 10 structures",
               "total_time_s": time.time() - t_start, "results": rows}
    text = table(rows, args.every)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    load = tuple(round(x, 2) for x in info.get("load_average_at_start", ()))
    out.with_suffix(".md").write_text(
        f"# Cost of the per-atom uncertainty in pair_style gmnn\n\nMachine: {info.get('cpu', '?')}, "
        f"{info.get('cpu_count')} cores, load average at start {load}; torch {info.get('torch')}, LAMMPS "
        f"{info.get('lammps')}; one torch thread per rank; fastest of {args.repeats} rounds. Total time "
        f"{payload['total_time_s'] / 60:.1f} min.\n\n{text}\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
