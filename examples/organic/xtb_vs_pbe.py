"""GFN2-xTB's own errors against PBE/def2-SVP on the held-out molecules (issue 17, item 4: the
baseline a PBE-level organic model must beat on molecules it never saw).

For every labelled structure of data/pbe_heldout_pbe_def2svp.xyz (gmnn-label's output for the
held-out selection, growing in the background) GFN2-xTB is computed here; forces are compared as
they are, energies after per-element shifts fitted by least squares on these very structures
(the two levels' energy zeros differ per element; fitting on the test set flatters xTB).
Writes results/xtb_vs_pbe_heldout.json.

    python examples/organic/xtb_vs_pbe.py
"""
import json
from pathlib import Path

import ase.io
import numpy as np

from gmnn.levels import Level, compute

HERE = Path(__file__).resolve().parent
ELEMENTS = (1, 6, 7, 8)


def main():
    frames = ase.io.read(HERE / "data" / "pbe_heldout_pbe_def2svp.xyz", index=":")
    level = Level.parse("gfn2-xtb")
    pbe, xtb, force_errors, counts = [], [], [], []
    for atoms in frames:
        energy, forces = compute(atoms.numbers, atoms.positions, level)
        pbe.append(atoms.get_potential_energy())
        xtb.append(energy)
        force_errors.append(np.abs(forces - atoms.get_forces()).ravel())
        counts.append([np.sum(atoms.numbers == z) for z in ELEMENTS])
    counts, difference = np.array(counts, float), np.array(pbe) - np.array(xtb)
    shifts, *_ = np.linalg.lstsq(counts, difference, rcond=None)
    residual = difference - counts @ shifts
    result = {"structures": len(frames), "molecules": len({a.info["name"] for a in frames}),
              "energy_mae_eV_after_element_shifts": round(float(np.abs(residual).mean()), 4),
              "forces_mae_eV_per_A": round(float(np.concatenate(force_errors).mean()), 4),
              "element_shifts_eV": dict(zip(("H", "C", "N", "O"), np.round(shifts, 4).tolist()))}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "xtb_vs_pbe_heldout.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
