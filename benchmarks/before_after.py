"""Before/after of the performance work, measured side by side in one run.

"before" is the moment implementation gmnn shipped first: an (edges, S, 40) tensor of radial x
Cartesian products, summed per atom with index_add (kept here, verbatim in behaviour, as
`scatter_moments`). "after" is the current gmnn.moments: 20 unique angular components per
edge and one padded batched matmul per centre. Everything else is the same code and the
same weights; both variants are built in this process by swapping the function the descriptor
calls, and each measurement alternates before/after.

Measured (1 torch thread):
- Python: energy + forces of a rattled diamond supercell, model time only (µs/atom);
- training: structures/s of an ethanol training epoch with forces in the loss;
- LAMMPS: pair_style gmnn MD on diamond boxes (µs/atom/step), the exported before/after files
  run by the same `lmp`.

    python benchmarks/before_after.py [--sizes 1000 10000] [--quick]

Writes benchmarks/results/before_after.json and .md.
"""
import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from ase.build import bulk

import gmnn.descriptor
from gmnn import build_model, export_model
from gmnn.checkpoint import load_model
from gmnn.data import read_structures
from gmnn.inference import forces_and_virials
from gmnn.neighbors import neighbor_list

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import lammps_md  # noqa: E402
import train_throughput  # noqa: E402
from train_throughput import best_of  # noqa: E402

CURRENT_MOMENTS = gmnn.descriptor.gaussian_moments


def scatter_moments(radial: torch.Tensor, unit_vectors: torch.Tensor, centers: torch.Tensor,
                    n_centers: int, expand: torch.Tensor) -> torch.Tensor:
    """The first implementation: per-edge (E, S, 40) products, index_add per centre."""
    n = unit_vectors
    nn_ = (n.unsqueeze(-1) * n.unsqueeze(-2)).reshape(-1, 9)
    nnn = (nn_.unsqueeze(-1) * n.unsqueeze(-2)).reshape(-1, 27)
    angular = torch.cat([torch.ones_like(n[:, :1]), n, nn_, nnn], dim=1)
    per_edge = radial.unsqueeze(-1) * angular.unsqueeze(1)
    moments = torch.zeros((n_centers, radial.shape[1], 40), dtype=radial.dtype, device=radial.device)
    return moments.index_add_(0, centers, per_edge)


VARIANTS = {"before": scatter_moments, "after": CURRENT_MOMENTS}


@contextlib.contextmanager
def variant(name):
    gmnn.descriptor.gaussian_moments = VARIANTS[name]
    # TorchScript reuses a module type compiled earlier in the process: forget it, so an export
    # inside this block compiles the swapped function
    torch.jit._recursive.concrete_type_store.type_store.clear()
    try:
        yield
    finally:
        gmnn.descriptor.gaussian_moments = CURRENT_MOMENTS
        torch.jit._recursive.concrete_type_store.type_store.clear()


def python_model_cost(model, n_atoms, dtype, repeats):
    n = max(1, round((n_atoms / 8) ** (1 / 3)))
    atoms = bulk("C", "diamond", a=3.567, cubic=True).repeat((n, n, n))
    atoms.rattle(0.05, seed=1)
    nl = neighbor_list(atoms.positions, model.cutoff, atoms.cell.array, atoms.pbc)
    species = torch.zeros(len(atoms), dtype=torch.long)
    centers, neighbors = torch.from_numpy(nl.centers), torch.from_numpy(nl.neighbors)
    m = model.to(dtype)

    def step():
        v = torch.tensor(nl.vectors, dtype=dtype, requires_grad=True)
        e = m(v, centers, neighbors, species, len(atoms))
        (g,) = torch.autograd.grad(e.sum(), v)
        return forces_and_virials(g, v, centers, neighbors, len(atoms))[0]
    out = {}
    results = {}
    for name in VARIANTS:
        with variant(name):
            step()
            out[name] = best_of(step, repeats) / len(atoms) * 1e6
            results[name] = step()
    # same physics: forces agree to float rounding
    diff = float((results["before"] - results["after"]).abs().max())
    return {"atoms": len(atoms), "dtype": str(dtype).replace("torch.", ""), "before_us_per_atom": out["before"],
            "after_us_per_atom": out["after"], "speedup": out["before"] / out["after"], "max_force_difference": diff}


def training_throughput(structures, dtype, repeats):
    """train_throughput.py's epoch benchmark (512-512, batches of 32), once per variant."""
    out = {}
    for name in VARIANTS:
        with variant(name):
            torch.manual_seed(0)
            out[name] = train_throughput.training_throughput(structures, dtype, (512, 512), repeats=repeats)
    return {"dtype": dtype, "structures": out["after"]["n_structures"],
            "before_structures_per_s": out["before"]["structures_per_s"],
            "after_structures_per_s": out["after"]["structures_per_s"],
            "speedup": out["after"]["structures_per_s"] / out["before"]["structures_per_s"]}


def exported_uses(path, op: str) -> bool:
    """Whether the TorchScript code in an exported file calls torch.<op>."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        return any(f"torch.{op}(" in z.read(n).decode() for n in z.namelist() if n.endswith(".py"))


def lammps_cost(model, sizes, dtypes, workdir: Path):
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    mpirun = shutil.which("mpirun") or str(Path(sys.executable).parent / "mpirun")
    rows = []
    for size in sizes:
        data, elements, temperature, atoms = lammps_md.build_system("diamond", size, workdir)
        for dtype in dtypes:
            row = {"atoms": len(atoms), "dtype": dtype}
            steps = max(1, min(40, round((1.5e4 if dtype == "float64" else 6e4) / len(atoms))))
            for name in VARIANTS:
                with variant(name):
                    path = export_model(model, workdir / f"{name}_{dtype}.pt", dtype=dtype)
                assert exported_uses(path, "bmm") == (name == "after"), f"{path}: not the {name} variant"
                r = lammps_md.run_case(lmp, mpirun, data, lammps_md.gmnn_pair(str(path), elements, ""), temperature,
                                       1, 1, steps, 2, workdir, 3600)
                row[f"{name}_us_per_atom_step"] = r["us_per_atom_step"]
            row["speedup"] = row["before_us_per_atom_step"] / row["after_us_per_atom_step"]
            rows.append(row)
            print(f"LAMMPS diamond {row['atoms']} {dtype}: before {row['before_us_per_atom_step']:.1f}, "
                  f"after {row['after_us_per_atom_step']:.1f} µs/atom/step ({row['speedup']:.2f}x)", flush=True)
    return rows


def markdown(p) -> str:
    md = ["| measurement | atoms | dtype | before | after | speed-up |", "|---|---:|---|---:|---:|---:|"]
    for r in p["python"]:
        md.append(f"| Python model, energy+forces (µs/atom) | {r['atoms']} | {r['dtype']} | "
                  f"{r['before_us_per_atom']:.1f} | {r['after_us_per_atom']:.1f} | {r['speedup']:.2f}x |")
    for r in p["training"]:
        md.append(f"| training epoch, ethanol (structures/s) | 9 | {r['dtype']} | {r['before_structures_per_s']:.0f} | "
                  f"{r['after_structures_per_s']:.0f} | {r['speedup']:.2f}x |")
    for r in p["lammps"]:
        md.append(f"| LAMMPS diamond MD, 1 rank (µs/atom/step) | {r['atoms']} | {r['dtype']} | "
                  f"{r['before_us_per_atom_step']:.1f} | {r['after_us_per_atom_step']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(md) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--carbon-model", default=str(ROOT / "runs" / "carbon" / "best.ckpt"),
                   help="checkpoint; without it an untrained default carbon model (speed does not depend on weights)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "before_after.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    repeats = 1 if args.quick else 3
    if Path(args.carbon_model).exists():
        model = load_model(args.carbon_model)
    else:
        torch.manual_seed(0)
        model = build_model(["C"])
    payload = {"machine": lammps_md.machine_info(), "threads": 1, "python": [], "training": [], "lammps": []}
    for dtype in (torch.float32, torch.float64):
        for size in args.sizes[:1] if args.quick else args.sizes:
            r = python_model_cost(model, size, dtype, repeats)
            payload["python"].append(r)
            print(f"Python {r['atoms']} {r['dtype']}: before {r['before_us_per_atom']:.1f}, after "
                  f"{r['after_us_per_atom']:.1f} µs/atom ({r['speedup']:.2f}x; |dF| {r['max_force_difference']:.1e})",
                  flush=True)
    ethanol = read_structures(ROOT / "data" / "rmd17_ethanol_100.xyz", energy_unit="kcal/mol")
    for dtype in ("float32", "float64"):
        r = training_throughput(ethanol[:32] if args.quick else ethanol, dtype, repeats)
        payload["training"].append(r)
        print(f"training {dtype}: before {r['before_structures_per_s']:.0f}, after {r['after_structures_per_s']:.0f} "
              f"structures/s ({r['speedup']:.2f}x)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        payload["lammps"] = lammps_cost(model.float(), args.sizes[:1] if args.quick else args.sizes,
                                        ["float32", "float64"], Path(tmp))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    out.with_suffix(".md").write_text(markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
