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


def _done() -> dict:
    """{(structure, molecule): energy in eV of that molecule in its structure's basis}."""
    if not GHOST_LABELS.exists():
        return {}
    rows = [json.loads(line) for line in GHOST_LABELS.read_text().splitlines() if line.strip()]
    return {(r["structure"], r["molecule"]): r["energy_eV"] for r in rows}


def label(limit: int) -> None:
    """Computes, one molecule at a time and appended at once, every molecule's energy in its
    structure's basis, dimers before clusters."""
    from gmnn.levels import Level, compute
    level, done = Level.parse(LEVEL), _done()
    pairs = sorted(test_set(), key=lambda pair: len(pair[0]))
    todo = [(pair, i) for pair in pairs for i in range(len(pair[1]))
            if (int(pair[0].info["source_index"]), i) not in done][:limit]
    print(f"{len(done)} done, {len(todo)} to compute now")
    for n, ((cluster, parts), i) in enumerate(todo):
        ghosts = np.ones(len(cluster), bool)
        ghosts[parts[i].info["atoms"]] = False
        start = time.time()
        energy, _ = compute(cluster.numbers, cluster.positions, level, forces=False, ghosts=ghosts)
        row = {"structure": int(cluster.info["source_index"]), "molecule": i, "energy_eV": energy,
               "level": LEVEL, "wall_s": round(time.time() - start, 1)}
        with open(GHOST_LABELS, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{n + 1}/{len(todo)}] structure {row['structure']} molecule {i}: {row['wall_s']} s", flush=True)


def table() -> dict:
    """Per held-out kind: raw and counterpoise-corrected interaction energies, the BSSE, and D3's
    interaction energy for scale (meV per structure)."""
    from gmnn.dispersion import D3
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
        d3 = _d3_interaction(D3, cluster, parts)
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


def _d3_interaction(D3, cluster, parts) -> float:
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
    args = p.parse_args(argv)
    if args.label:
        label(args.limit)
        return
    result = table()
    print(markdown(result))
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(result, indent=2))
        Path(args.out + ".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
