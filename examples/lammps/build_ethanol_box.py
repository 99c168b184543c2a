"""Build a liquid-ethanol box as a LAMMPS data file (and, if asked, a demo model to run it).

    python examples/lammps/build_ethanol_box.py --molecules 512 --out ethanol.data
    python examples/lammps/build_ethanol_box.py --molecules 512 --out ethanol.data \
        --demo-model demo_model.pt          # an UNTRAINED model, for timing only

Molecules sit on a cubic grid at the requested density (default 0.789 g/cm^3, liquid ethanol
at 298 K) with random orientations; an orientation is redrawn until no atom is closer than
--min-distance to an atom of another molecule (periodic images included). Atom types follow
the element order given to `pair_coeff` in in.ethanol: 1 = C, 2 = H, 3 = O.
"""
import argparse
import math
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io import write
from ase.units import _amu

ELEMENTS = ["C", "H", "O"]


def ethanol_box(n_molecules: int, density: float = 0.789, min_distance: float = 1.7, seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    template = molecule("CH3CH2OH")
    template.translate(-template.get_center_of_mass())
    mass_g = template.get_masses().sum() * _amu * 1e3 * n_molecules
    side = (mass_g / density * 1e24) ** (1.0 / 3.0)  # Å
    n_grid = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    spacing = side / n_grid
    sites = [(i, j, k) for i in range(n_grid) for j in range(n_grid) for k in range(n_grid)]
    chosen = sorted(rng.choice(len(sites), size=n_molecules, replace=False))
    placed = {}  # grid site -> positions
    cell = np.diag([side] * 3)

    def too_close(site, pos):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                for dk in (-1, 0, 1):
                    other = placed.get(((site[0] + di) % n_grid, (site[1] + dj) % n_grid, (site[2] + dk) % n_grid))
                    if other is None:
                        continue
                    d = pos[:, None, :] - other[None, :, :]
                    d -= side * np.round(d / side)
                    if np.min(np.einsum("ijk,ijk->ij", d, d)) < min_distance**2:
                        return True
        return False

    for idx in chosen:
        site = sites[idx]
        centre = (np.array(site) + 0.5) * spacing
        for _ in range(1000):
            m = template.copy()
            m.rotate(rng.uniform(0, 360), rng.normal(size=3))
            pos = m.positions + centre + rng.uniform(-0.1, 0.1, 3) * spacing
            if not too_close(site, pos):
                break
        else:
            raise RuntimeError(f"could not place a molecule at grid site {site}: use a cube number of "
                               "molecules (343, 512, 1000, ...) or lower --density / --min-distance")
        placed[site] = pos
    positions = np.concatenate([placed[sites[i]] for i in chosen])
    symbols = template.get_chemical_symbols() * n_molecules
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    atoms.wrap()
    return atoms


def write_molecular_data(atoms: Atoms, path, atoms_per_molecule: int = 9) -> None:
    """A LAMMPS data file (atom_style full) with one molecule ID per molecule of an ethanol_box,
    for inputs that address molecules, e.g. `neigh_modify exclude molecule/inter all`."""
    import numpy as np
    atoms = atoms.copy()
    atoms.arrays["mol-id"] = np.arange(len(atoms)) // atoms_per_molecule + 1
    write(path, atoms, format="lammps-data", specorder=ELEMENTS, atom_style="full", masses=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecules", type=int, default=512,
                   help="number of ethanol molecules, 9 atoms each; cube numbers pack best")
    p.add_argument("--density", type=float, default=0.789, help="g/cm^3")
    p.add_argument("--min-distance", type=float, default=1.7, help="Å between atoms of different molecules")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="ethanol.data")
    p.add_argument("--demo-model", default=None,
                   help="also export an untrained C/H/O model here (timing only, not physics)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)

    atoms = ethanol_box(args.molecules, args.density, args.min_distance, args.seed)
    write(args.out, atoms, format="lammps-data", specorder=ELEMENTS, atom_style="atomic", masses=True)
    print(f"wrote {args.out}: {len(atoms)} atoms, cubic box {atoms.cell[0, 0]:.3f} Å, "
          f"{args.density} g/cm^3")
    if args.demo_model:
        import torch
        import gmnn
        torch.manual_seed(args.seed)
        model = gmnn.build_model(ELEMENTS, dtype="float64")
        path = gmnn.export_model(model, Path(args.demo_model), dtype=args.dtype)
        print(f"wrote {path}: untrained demo model ({args.dtype}), for timing only")


if __name__ == "__main__":
    main()
