"""How much of PBE/def2-SVP's intermolecular binding is basis set superposition error (BSSE)?

Counterpoise (Boys-Bernardi) on the labelled held-out structures of heldout.py: each molecule is
computed again in the basis of its whole dimer or cluster (the other molecules as ghost atoms,
gmnn.levels.compute(ghosts=...)). Then, per structure,

    raw interaction  E_int     = E(cluster) - sum_i E_i(own basis)
    counterpoise     E_int^CP  = E(cluster) - sum_i E_i(cluster basis)
    BSSE             E_int^CP - E_int = sum_i [E_i(own basis) - E_i(cluster basis)] >= 0

A small basis over-binds molecules: liquid densities from such labels come out too high.

    python examples/liquid_ethanol/counterpoise.py --label     # resumable; energies only, dimers first
    python examples/liquid_ethanol/counterpoise.py --out examples/liquid_ethanol/results/counterpoise
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from gmnn.gcp import PARAMETERS
from heldout import DATA, test_set

LEVEL = "pbe/def2-svp"
GHOST_LABELS = DATA / "ethanol_liquid_heldout_counterpoise_pbe_def2svp.jsonl"


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _done() -> dict:
    """{(structure, molecule): energy in eV of that molecule in its structure's basis}."""
    return {(r["structure"], r["molecule"]): r["energy_eV"] for r in _rows(GHOST_LABELS)}


def _ghosts(cluster, part) -> np.ndarray:
    """Every atom of `cluster` a ghost except those of `part`: the part in the cluster's basis."""
    ghosts = np.ones(len(cluster), bool)
    ghosts[part.info["atoms"]] = False
    return ghosts


def _compute(todo: list, level_name: str, path: Path) -> None:
    """Energies of `todo` ([(row keys, atoms, ghosts or None)]) at `level_name`, each appended to
    the JSON-lines file `path` as soon as it is done (a re-run skips what is there)."""
    from gmnn.levels import Level, compute
    level = Level.parse(level_name)
    for n, (keys, atoms, ghosts) in enumerate(todo):
        start = time.time()
        energy, _ = compute(atoms.numbers, atoms.positions, level, forces=False, ghosts=ghosts)
        row = {**keys, "energy_eV": energy, "level": level_name, "wall_s": round(time.time() - start, 1)}
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{n + 1}/{len(todo)}] {keys}: {row['wall_s']} s", flush=True)


def label(limit: int) -> None:
    """Every molecule's energy in its structure's basis, dimers before clusters."""
    done = _done()
    todo = [({"structure": int(cluster.info["source_index"]), "molecule": i}, cluster, _ghosts(cluster, part))
            for cluster, parts in sorted(test_set(), key=lambda pair: len(pair[0]))
            for i, part in enumerate(parts)]
    todo = [t for t in todo if (t[0]["structure"], t[0]["molecule"]) not in done][:limit]
    print(f"{len(done)} done, {len(todo)} to compute now")
    _compute(todo, LEVEL, GHOST_LABELS)


def reference_file(level: str) -> Path:
    return DATA / f"ethanol_liquid_heldout_interaction_{level.replace('/', '_').replace('-', '')}.jsonl"


def label_reference(level_name: str, limit: int) -> None:
    """The dimers' interaction energies at a larger basis (`level_name`, e.g. pbe/def2-tzvp), raw
    and counterpoise-corrected: each dimer, each molecule in its own basis and in the dimer's."""
    path = reference_file(level_name)
    done = {(r["structure"], r["what"]) for r in _rows(path)}
    todo = []
    for cluster, parts in sorted(test_set(), key=lambda pair: len(pair[0])):
        if len(parts) != 2:
            continue
        k = int(cluster.info["source_index"])
        todo.append(({"structure": k, "what": "dimer"}, cluster, None))
        for i, part in enumerate(parts):
            todo += [({"structure": k, "what": f"molecule {i}"}, part, None),
                     ({"structure": k, "what": f"molecule {i} in dimer basis"}, cluster, _ghosts(cluster, part))]
    todo = [t for t in todo if (t[0]["structure"], t[0]["what"]) not in done][:limit]
    print(f"{len(done)} done, {len(todo)} to compute now ({level_name})")
    _compute(todo, level_name, path)


def reference_table(level_name: str) -> dict:
    """Per dimer with all its energies at `level_name`: interaction energies (meV) at that level, raw
    and counterpoise-corrected, next to def2-SVP's raw, counterpoise-corrected and + gCP ones."""
    energies = {}
    for r in _rows(reference_file(level_name)):
        energies.setdefault(r["structure"], {})[r["what"]] = r["energy_eV"]
    svp = {r["structure"]: r for r in table()["structures"]}
    rows = []
    for k, e in sorted(energies.items()):
        if len(e) < 5 or k not in svp:
            continue
        raw = e["dimer"] - e["molecule 0"] - e["molecule 1"]
        cp = e["dimer"] - e["molecule 0 in dimer basis"] - e["molecule 1 in dimer basis"]
        s = svp[k]
        rows.append({"structure": k, "reference_raw_meV": 1000 * raw, "reference_cp_meV": 1000 * cp,
                     "svp_raw_meV": s["raw_meV"], "svp_cp_meV": s["raw_meV"] + s["bsse_meV"],
                     **{f"svp_gcp_{name}_meV": s["raw_meV"] + s[f"gcp_{name}_meV"] for name in PARAMETERS}})
    return {"level": level_name, "dimers": rows}


def table() -> dict:
    """Per held-out kind: raw and counterpoise-corrected interaction energies, the BSSE, and D3's
    interaction energy for scale (meV per structure)."""
    from gmnn.interaction import interaction
    done, rows = _done(), []
    for cluster, parts in test_set():
        k = int(cluster.info["source_index"])
        if not all((k, i) in done for i in range(len(parts))):
            continue
        e_own = [p.get_potential_energy() for p in parts]
        raw = interaction(cluster.get_potential_energy(), cluster.get_forces(), parts, e_own,
                          [p.get_forces() for p in parts]).energy
        bsse = sum(e_own[i] - done[(k, i)] for i in range(len(parts)))
        d3 = _d3_interaction(cluster, parts)
        rows.append({"structure": k, "kind": cluster.info["kind"], "molecules": len(parts),
                     "raw_meV": 1000 * raw, "bsse_meV": 1000 * bsse, "d3_meV": 1000 * d3,
                     **{f"gcp_{name}_meV": 1000 * _gcp_interaction(name, cluster, parts) for name in PARAMETERS}})
    summary = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind in ("all", r["kind"])]
        raw, bsse, d3 = (np.array([r[key] for r in sel]) for key in ("raw_meV", "bsse_meV", "d3_meV"))
        summary[kind] = {"n": len(sel), "raw_interaction_meV": float(raw.mean()),
                         "bsse_meV": float(bsse.mean()), "d3_interaction_meV": float(d3.mean()),
                         "bsse_over_raw_binding": float(bsse.sum() / -raw.sum()) if raw.sum() < 0 else None}
        for name in PARAMETERS:
            gcp = np.array([r[f"gcp_{name}_meV"] for r in sel])
            summary[kind][f"gcp_{name}_meV"] = float(gcp.mean())
            summary[kind][f"gcp_{name}_mae_vs_bsse_meV"] = float(np.abs(gcp - bsse).mean())
    return {"level": LEVEL, "structures": rows, "summary": summary}


def _gcp_interaction(name, cluster, parts) -> float:
    """gCP's estimate of the BSSE of the interaction energy (eV), with the parameters `name`."""
    from gmnn.gcp import energy_and_forces
    return energy_and_forces(cluster.numbers, cluster.positions, name)[0] - sum(
        energy_and_forces(p.numbers, p.positions, name)[0] for p in parts)


def _d3_interaction(cluster, parts) -> float:
    """D3(BJ)'s interaction energy (eV), as gmnn.dispersion recommends it."""
    from gmnn.dispersion import D3

    def energy(atoms):
        atoms = atoms.copy()
        atoms.calc = D3()
        return atoms.get_potential_energy()
    return energy(cluster) - sum(energy(p) for p in parts)


def markdown(result: dict) -> str:
    gcp_heads = "".join(f" gCP {name} (MAE vs BSSE) |" for name in PARAMETERS)
    lines = ["| kind | n | raw PBE interaction (meV) | BSSE (meV) | BSSE / raw binding |" + gcp_heads
             + " D3 interaction (meV) |", "|---|---:|---:|---:|---:|" + "---:|" * len(PARAMETERS) + "---:|"]
    for kind, r in result["summary"].items():
        ratio = "—" if r["bsse_over_raw_binding"] is None else f"{100 * r['bsse_over_raw_binding']:.0f} %"
        gcp = "".join(f" {r[f'gcp_{name}_meV']:.0f} ({r[f'gcp_{name}_mae_vs_bsse_meV']:.0f}) |" for name in PARAMETERS)
        lines.append(f"| {kind} | {r['n']} | {r['raw_interaction_meV']:.0f} | {r['bsse_meV']:.0f} | {ratio} |"
                     f"{gcp} {r['d3_interaction_meV']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", action="store_true", help="compute the molecules in their structures' basis")
    p.add_argument("--limit", type=int, default=10**9, help="compute at most this many now")
    p.add_argument("--out", help="write the table to OUT.json and OUT.md")
    p.add_argument("--reference", help="a larger-basis level (e.g. pbe/def2-tzvp) for the dimers' interaction "
                                       "energies, raw and counterpoise-corrected: with --label, compute them")
    args = p.parse_args(argv)
    if args.label and args.reference:
        label_reference(args.reference, args.limit)
        return
    if args.label:
        label(args.limit)
        return
    if args.reference:
        result = reference_table(args.reference)
        print(json.dumps(result["dimers"], indent=1))
        if args.out:
            Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        return
    result = table()
    print(markdown(result))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        Path(args.out + ".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
