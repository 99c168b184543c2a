"""Training throughput and inference cost of GM-NN in gmnn (PyTorch, CPU).

- training: structures/s of a full training epoch (forces in the loss, create_graph) on the
  shipped rMD17 ethanol frames and the GAP carbon structures;
- inference: µs per atom for energy + forces (one forward + one backward) on rattled
  diamond supercells of ~10^2, 10^3, 10^4 atoms (r_c = 5 Å, ~86 neighbours per atom), split
  into neighbour list and model time;
float32 and float64, one torch thread unless --threads. Prints a table, writes JSON.

    python benchmarks/train_throughput.py [--threads 1] [--hidden 512 512] [--quick]
"""
import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from gmnn import build_model
from gmnn.data import read_structures
from gmnn.graph import build_graphs, collate
from gmnn.inference import forces_and_virials, predict
from gmnn.loss import loss_terms
from gmnn.neighbors import neighbor_list
from gmnn.scale_shift import fit_scale_shift

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def model_flops_per_atom(n_radial, n_basis, n_elements, hidden, n_features, edges_per_atom):
    """Floating-point operations per atom for energy + forces (forward + backward ~ 3x forward).

    Counted: radial functions (all element pairs as one matmul), the 20 unique angular
    monomials and the moment matmul over them, the eight contractions as written in
    descriptor.py, and the dense layers; exp/cos and indexing count as one operation per element."""
    s, k, p = n_radial, n_basis, n_elements**2
    per_edge = 3 * k + 2 * k * p * s + 2 * s * 20 + 20
    contractions = (2 * s * s * (3 + 9 + 27)              # pairs of L = 1, 2, 3
                    + 2 * s * s * 27 + 2 * s**3 * 9        # family 5
                    + 2 * s * s * 9 + 2 * s**3 * 3         # family 6
                    + 2 * s * s * 81 + 2 * s**3 * 9        # family 7
                    + 2 * s * s * 27 + 2 * s**3 * 3)       # family 8
    widths = [n_features, *hidden, 1]
    dense = sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
    forward = edges_per_atom * per_edge + contractions + dense
    return 3 * forward


def peak_matmul_gflops(dtype, n=2048, repeats=3):
    """The machine's practical limit: a large square matmul in torch, same threads."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def training_throughput(structures, dtype, hidden, batch_size=32, repeats=3):
    elements = sorted({int(z) for s in structures for z in s.numbers})
    model = build_model(elements, hidden=hidden, dtype=dtype)
    graphs = build_graphs(structures, model.atomic_numbers, model.cutoff)
    fit_scale_shift(model, graphs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    batches = [collate(graphs[k:k + batch_size]) for k in range(0, len(graphs), batch_size)]

    def epoch():
        for b in batches:
            out = predict(model, b, forces=True, create_graph=True)
            loss = loss_terms(out, b, 1.0, 4.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    epoch()  # warm-up
    seconds = best_of(epoch, repeats)
    return {"structures_per_s": len(graphs) / seconds, "epoch_s": seconds, "n_structures": len(graphs),
            "atoms_per_structure": float(np.mean([g.n_atoms for g in graphs])),
            "edges_per_atom": float(np.mean([len(g.centers) / g.n_atoms for g in graphs]))}


def inference_cost(n_target, dtype, hidden, repeats=3):
    base = bulk("C", "diamond", a=3.57, cubic=True)  # 8 atoms
    reps = max(1, round((n_target / 8) ** (1 / 3)))
    atoms = base * (reps, reps, reps)
    atoms.rattle(0.05, seed=0)
    model = build_model(["C"], hidden=hidden, dtype=dtype).eval()
    t_nl = best_of(lambda: neighbor_list(atoms.positions, model.cutoff, atoms.cell.array, atoms.pbc), repeats)
    nl = neighbor_list(atoms.positions, model.cutoff, atoms.cell.array, atoms.pbc)
    species = torch.zeros(len(atoms), dtype=torch.long)
    centers, neighbors = torch.from_numpy(nl.centers), torch.from_numpy(nl.neighbors)
    vectors = torch.tensor(nl.vectors, dtype=model.dtype)

    def energy_forces():
        v = vectors.clone().requires_grad_(True)
        e = model(v, centers, neighbors, species, len(atoms))
        (g,) = torch.autograd.grad(e.sum(), v)
        forces_and_virials(g, v, centers, neighbors, len(atoms))
    energy_forces()
    t_model = best_of(energy_forces, repeats)
    n = len(atoms)
    flops = model_flops_per_atom(5, 7, 1, hidden, 360, len(nl.centers) / n)
    return {"n_atoms": n, "edges_per_atom": len(nl.centers) / n, "model_flops_per_atom": flops,
            "model_gflops": flops * n / t_model / 1e9,
            "neighbor_list_us_per_atom": 1e6 * t_nl / n, "model_us_per_atom": 1e6 * t_model / n,
            "total_us_per_atom": 1e6 * (t_nl + t_model) / n}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--quick", action="store_true", help="fewer structures and repeats")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    hidden = tuple(args.hidden)
    ethanol = read_structures(DATA / "rmd17_ethanol_100.xyz", energy_unit="kcal/mol")
    carbon = read_structures(DATA / "carbon_gap_100.xyz")
    if args.quick:
        ethanol, carbon = ethanol[:32], carbon[:32]
    repeats = 1 if args.quick else 3
    results = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": args.threads, "hidden": list(hidden), "training": [], "inference": []}
    print(f"torch {torch.__version__}, {args.threads} thread(s), network {hidden}, 360 features, r_c 5 A\n")
    print(f"{'training':<10}{'dtype':<9}{'struct/s':>10}{'atoms/str':>11}{'edges/atom':>12}")
    for name, structures in (("ethanol", ethanol), ("carbon", carbon)):
        for dtype in ("float32", "float64"):
            r = training_throughput(structures, dtype, hidden, repeats=repeats)
            results["training"].append({"data": name, "dtype": dtype, **r})
            print(f"{name:<10}{dtype:<9}{r['structures_per_s']:>10.1f}{r['atoms_per_structure']:>11.1f}"
                  f"{r['edges_per_atom']:>12.1f}", flush=True)
    peak = {dt: peak_matmul_gflops(getattr(torch, dt)) for dt in ("float32", "float64")}
    results["peak_matmul_gflops"] = peak
    print(f"\npeak torch matmul (2048^2, {args.threads} thread(s)): float32 {peak['float32']:.0f} GFLOP/s, "
          f"float64 {peak['float64']:.0f} GFLOP/s")
    print(f"\n{'inference':<10}{'dtype':<9}{'atoms':>7}{'nl us/at':>10}{'model us/at':>13}{'total us/at':>13}"
          f"{'kFLOP/at':>10}{'GFLOP/s':>9}{'of peak':>9}")
    for n in args.sizes:
        for dtype in ("float32", "float64"):
            r = inference_cost(n, dtype, hidden, repeats=repeats)
            r["fraction_of_peak"] = r["model_gflops"] / peak[dtype]
            results["inference"].append({"dtype": dtype, **r})
            print(f"{'diamond':<10}{dtype:<9}{r['n_atoms']:>7}{r['neighbor_list_us_per_atom']:>10.1f}"
                  f"{r['model_us_per_atom']:>13.1f}{r['total_us_per_atom']:>13.1f}"
                  f"{r['model_flops_per_atom'] / 1e3:>10.0f}{r['model_gflops']:>9.1f}{r['fraction_of_peak']:>9.1%}",
                  flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
