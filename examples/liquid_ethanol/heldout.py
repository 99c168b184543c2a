"""The held-out intermolecular test (issue 15, items 3 and 5): clusters and dimers of another
droplet run (another seed, 350 K; data/ethanol_liquid_heldout.xyz), labelled at PBE/def2-SVP, and
each of their molecules labelled alone, so that next to total energy and force errors the
interaction energies and forces (gmnn.interaction) are compared with PBE's. A model fine-tuned to
CCSD(T) monomers is rightly far from PBE's total forces; its interaction forces should stay PBE's.

    python examples/liquid_ethanol/heldout.py                 # writes the fragment geometries (once)
    gmnn-label examples/liquid_ethanol/data/ethanol_liquid_heldout_fragments.xyz \
        -o examples/liquid_ethanol/data/ethanol_liquid_heldout_fragments_pbe_def2svp.xyz --level pbe/def2-svp
    python examples/liquid_ethanol/heldout.py --model ethanol-pbe-def2svp --model runs/liquid_pbe/run/best.ckpt

A structure counts once it and all its molecules are labelled (both label files resume and fill
in order). Energies: meV per structure for interactions (dimers have 2 molecules, clusters 3),
meV/atom for totals (offset removed: a CCSD(T) model's zero is not PBE's); forces meV/Å.
"""
import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GEOMETRIES = DATA / "ethanol_liquid_heldout.xyz"
LABELS = DATA / "ethanol_liquid_heldout_pbe_def2svp.xyz"
FRAGMENTS = DATA / "ethanol_liquid_heldout_fragments.xyz"
FRAGMENT_LABELS = DATA / "ethanol_liquid_heldout_fragments_pbe_def2svp.xyz"


def write_fragments() -> None:
    """The molecules of every held-out structure, alone, in the structures' order, each with its
    structure's index (info["parent"]) and its atoms there (info["atoms"])."""
    from ase.io import read, write
    from gmnn.interaction import fragments
    parts = []
    for k, cluster in enumerate(read(GEOMETRIES, ":")):
        for part in fragments(cluster):
            part.info.update(parent=k, kind=cluster.info["kind"])
            parts.append(part)
    write(FRAGMENTS, parts)
    print(f"wrote {FRAGMENTS} ({len(parts)} molecules of {k + 1} structures)")


def _labelled(path: Path) -> list:
    from ase.io import read
    return read(path, ":") if path.exists() and path.stat().st_size > 0 else []


def test_set(gcp: Optional[str] = None) -> list:
    """[(structure with PBE energy/forces, its fragments with PBE energy/forces)] for every held-out
    structure whose labels are all there; with `gcp` (gmnn.gcp parameters), PBE + gCP labels, the
    reference of a model trained with train_liquid.py --gcp."""
    from ase.io import read
    geometries, fragment_geometries = read(GEOMETRIES, ":"), read(FRAGMENTS, ":")
    parts = {}
    for frame in _labelled(FRAGMENT_LABELS):
        source = fragment_geometries[int(frame.info["source_index"])]
        frame.info.update(atoms=source.info["atoms"], parent=int(source.info["parent"]))
        parts.setdefault(frame.info["parent"], []).append(frame)
    wanted = Counter(int(part.info["parent"]) for part in fragment_geometries)  # molecules per structure
    pairs = []
    for frame in _labelled(LABELS):
        k = int(frame.info["source_index"])
        if len(parts.get(k, [])) == wanted[k]:
            frame.info["kind"] = "cluster" if geometries[k].info["kind"] == "cluster" else "dimer"
            pairs.append((frame, parts[k]))
    if gcp:
        from gmnn.gcp import corrected
        pairs = [(corrected(frame, gcp), [corrected(part, gcp) for part in ps]) for frame, ps in pairs]
    return pairs


def _predict(model, frames):
    from gmnn.data import Structure
    from gmnn.evaluation import predict_graphs
    from gmnn.graph import build_graphs
    p = predict_graphs(model, build_graphs([Structure.from_atoms(a) for a in frames], model.atomic_numbers,
                                           model.cutoff))
    splits = np.cumsum(p.n_atoms)[:-1]
    return p.energy, np.split(p.forces, splits)


def errors(model, pairs) -> dict:
    """{kind: n, interaction energy MAE (meV per structure), interaction force MAE (meV/Å), total
    energy MAE (meV/atom, offset removed) and total force MAE (meV/Å)} for dimers, clusters, all."""
    from gmnn.interaction import interaction
    clusters = [c for c, _ in pairs]
    parts = [p for _, ps in pairs for p in ps]
    e_cluster, f_cluster = _predict(model, clusters)
    e_part, f_part = _predict(model, parts)
    rows, start = [], 0
    for k, (cluster, ps) in enumerate(pairs):
        stop = start + len(ps)
        ref = interaction(cluster.get_potential_energy(), cluster.get_forces(), ps,
                          [p.get_potential_energy() for p in ps], [p.get_forces() for p in ps])
        got = interaction(e_cluster[k], f_cluster[k], ps, e_part[start:stop], f_part[start:stop])
        rows.append({"kind": cluster.info["kind"], "n_atoms": len(cluster),
                     "de_int": got.energy - ref.energy, "df_int": np.abs(got.forces - ref.forces).ravel(),
                     "de_total": e_cluster[k] - cluster.get_potential_energy(),
                     "df_total": np.abs(f_cluster[k] - cluster.get_forces()).ravel()})
        start = stop
    table = {}
    for kind in ("dimer", "cluster", "all"):
        sel = [r for r in rows if kind in ("all", r["kind"])]
        if not sel:
            continue
        de_total = np.array([r["de_total"] / r["n_atoms"] for r in sel])
        table[kind] = {"n": len(sel),
                       "interaction_energy_mae_meV": 1000 * float(np.mean([abs(r["de_int"]) for r in sel])),
                       "interaction_forces_mae_meV_A": 1000 * float(np.mean(np.concatenate([r["df_int"] for r in sel]))),
                       "energy_per_atom_mae_meV_offset_removed": 1000 * float(np.mean(np.abs(de_total - de_total.mean()))),
                       "forces_mae_meV_A": 1000 * float(np.mean(np.concatenate([r["df_total"] for r in sel])))}
    return table


def markdown(results: dict) -> str:
    lines = ["| model | kind | n | interaction E MAE (meV) | interaction F MAE (meV/Å) | E MAE (meV/atom, offset removed) | F MAE (meV/Å) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, table in results.items():
        for kind, r in table.items():
            lines.append(f"| {name} | {kind} | {r['n']} | {r['interaction_energy_mae_meV']:.1f} | "
                         f"{r['interaction_forces_mae_meV_A']:.1f} | {r['energy_per_atom_mae_meV_offset_removed']:.2f} | "
                         f"{r['forces_mae_meV_A']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="a checkpoint, model file or shipped name (repeat)")
    p.add_argument("--name", action="append", default=[], help="the table's name of each --model (default: the path)")
    p.add_argument("--out", help="write the table to OUT.json and OUT.md")
    p.add_argument("--gcp", help="compare with PBE + gCP labels (gmnn.gcp parameters, e.g. gga/def2-svp): "
                                 "for models trained with train_liquid.py --gcp")
    args = p.parse_args(argv)
    if not FRAGMENTS.exists():
        write_fragments()
    if not args.model:
        return
    from gmnn.loading import load
    pairs = test_set(args.gcp)
    if not pairs:
        raise SystemExit(f"error: no held-out structure has all its labels yet: label {GEOMETRIES.name} and {FRAGMENTS.name}")
    names = args.name + args.model[len(args.name):]
    results = {name: errors(load(model), pairs) for name, model in zip(names, args.model)}
    print(markdown(results))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=2))
        Path(args.out + ".md").write_text(markdown(results))


if __name__ == "__main__":
    main()
