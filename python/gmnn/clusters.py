"""Condensed-phase configurations for labelling: clusters and dimers of whole molecules with
the contacts of a liquid, as isolated molecules (which gmnn-label computes).

The liquid: `liquid_droplet`, a non-periodic droplet of whole molecules whose centres of mass
have the liquid's number density, held by a soft spherical wall (`SphericalWall`), or
`liquid_box`, a periodic cubic box at the density. `liquid_frames` runs Langevin MD of either
(GFN2-xTB by default: tblite's ASE calculator computes periodic GFN2-xTB too, but for 16 ethanol
it took ~18 s a step here against ~1.3 s for the droplet, so the droplet is the default of
gmnn-sample). From its frames `cut_clusters` cuts a central molecule and its closest whole
neighbours within a cutoff, and `dimers` takes pairs of molecules at their closest contacts
(hydrogen-bonded or not) and a scan of a pair along the line through the centres of mass, from
the repulsive wall out to where the interaction has decayed. `sample_liquid` is gmnn-sample
--clusters / --dimers.

Molecules are found by connectivity (covalent radii, minimum image), never by atom order: two
atoms are bonded if closer than `BOND_SCALE` times the sum of their covalent radii.
"""
import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

BOND_SCALE = 1.2                 # bonded: d < 1.2 (r_i + r_j), covalent radii (ASE's natural cutoffs x 1.2)
DONORS = ACCEPTORS = (7, 8, 9)   # N, O, F
AMU_PER_A3_TO_G_PER_CM3 = 1e24 / units.mol  # 1 amu/A^3 = 1.66054 g/cm^3


class ClusterError(ValueError):
    """A molecule, box or option that cannot give the configurations asked for; the message is one line."""


# ---- molecules ------------------------------------------------------------------------------

def bonds(atoms: Atoms, scale: float = BOND_SCALE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, D): every bonded ordered pair and its vector D = r_j - r_i (minimum image if periodic)."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list
    if len(atoms) < 2:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3))
    radii = scale * covalent_radii[atoms.numbers]
    probe = atoms if np.any(atoms.pbc) else Atoms(numbers=atoms.numbers, positions=atoms.positions)
    return neighbor_list("ijD", probe, radii, self_interaction=False)


def molecules(atoms: Atoms, scale: float = BOND_SCALE) -> List[np.ndarray]:
    """The molecules of `atoms` (connected components of the bond graph, minimum image), each as
    the sorted indices of its atoms, ordered by their first atom."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    i, j, _ = bonds(atoms, scale)
    n = len(atoms)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups = {}
    for k, lab in enumerate(label):
        groups.setdefault(lab, []).append(k)
    return sorted((np.array(g) for g in groups.values()), key=lambda g: g[0])


def whole_positions(atoms: Atoms, scale: float = BOND_SCALE) -> np.ndarray:
    """Positions with every molecule made whole across the periodic boundaries: each atom placed
    where the bonds from its molecule's first atom put it (minimum-image bond vectors)."""
    i, j, D = bonds(atoms, scale)
    pos = atoms.positions.copy()
    if not np.any(atoms.pbc):
        return pos
    done = np.zeros(len(atoms), bool)
    neighbours = [[] for _ in range(len(atoms))]
    for a, b, d in zip(i, j, D):
        neighbours[a].append((b, d))
    for start in range(len(atoms)):
        if done[start]:
            continue
        done[start] = True
        stack = [start]
        while stack:
            a = stack.pop()
            for b, d in neighbours[a]:
                if not done[b]:
                    pos[b] = pos[a] + d
                    done[b] = True
                    stack.append(b)
    return pos


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def density_g_cm3(atoms: Atoms) -> float:
    return float(atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_A3_TO_G_PER_CM3)


# ---- the liquid -----------------------------------------------------------------------------

def _check_start(molecule: Atoms, n_molecules: int, density_g_cm3: float) -> np.ndarray:
    """The molecule's positions about its centre of mass, after checking the arguments."""
    if n_molecules < 1:
        raise ClusterError(f"need at least 1 molecule, got {n_molecules}")
    if not (math.isfinite(density_g_cm3) and density_g_cm3 > 0):
        raise ClusterError(f"density must be a positive number of g/cm^3, got {density_g_cm3}")
    probe = Atoms(numbers=molecule.numbers, positions=molecule.positions)
    if len(molecules(probe)) != 1:
        raise ClusterError(f"the starting structure must be one molecule, found {len(molecules(probe))} "
                           f"(bonded: closer than {BOND_SCALE:g} x the sum of covalent radii)")
    return molecule.positions - molecule.get_center_of_mass()


def _volume(molecule: Atoms, n_molecules: int, density_g_cm3: float) -> float:
    """A^3 that n molecules fill at the density."""
    return molecule.get_masses().sum() * n_molecules * AMU_PER_A3_TO_G_PER_CM3 / density_g_cm3


def liquid_box(molecule: Atoms, n_molecules: int, density_g_cm3: float, seed: int = 0, min_distance: float = 2.0,
               sweeps: int = 2000) -> Atoms:
    """A periodic cubic box of `n_molecules` copies of `molecule` (whole, rigid, random orientations
    and positions) at `density_g_cm3`, with no intermolecular atom pair (minimum image) closer than
    `min_distance` A. Each molecule is inserted at the best of 100 random placements (the one
    farthest from those already there); the overlaps left are then removed by Monte Carlo moves
    of whole molecules (small random translations and rotations that lower the overlap
    sum (min_distance - d)^2, and after 20 sweeps without progress a fresh random placement of
    each overlapping molecule), for at most `sweeps` sweeps. Raises ClusterError if overlaps remain."""
    body = _check_start(molecule, n_molecules, density_g_cm3)
    length = _volume(molecule, n_molecules, density_g_cm3) ** (1 / 3)
    if 2 * np.max(np.linalg.norm(body, axis=1)) + min_distance > length:
        raise ClusterError(f"a box of {n_molecules} molecule(s) at {density_g_cm3:g} g/cm^3 is {length:.3g} A wide, "
                           f"too small for one molecule and its periodic image: use more molecules")
    xyz = _pack(body, n_molecules, min_distance, sweeps, np.random.default_rng(seed), length=length)
    if xyz is None:
        raise ClusterError(f"could not place {n_molecules} molecules at {density_g_cm3:g} g/cm^3 with no atoms of "
                           f"different molecules closer than {min_distance:g} A: lower the density")
    box = Atoms(numbers=np.tile(molecule.numbers, n_molecules), positions=xyz.reshape(-1, 3), cell=[length] * 3,
                pbc=True)
    box.wrap()
    box.info.update(molecules=n_molecules, density_g_cm3=float(density_g_cm3), seed=int(seed))
    return box


def liquid_droplet(molecule: Atoms, n_molecules: int, density_g_cm3: float, seed: int = 0,
                   min_distance: float = 2.0, sweeps: int = 2000) -> Atoms:
    """A non-periodic droplet: `n_molecules` copies of `molecule` (whole, rigid, random orientations)
    with their centres of mass in a sphere about the origin whose radius (info wall_radius, A)
    gives the centres the number density of the liquid at `density_g_cm3`; no intermolecular atom
    pair closer than `min_distance` A (packed as in `liquid_box`). `liquid_md` holds it together
    with a soft wall at that radius."""
    body = _check_start(molecule, n_molecules, density_g_cm3)
    radius = (3 * _volume(molecule, n_molecules, density_g_cm3) / (4 * np.pi)) ** (1 / 3)
    xyz = _pack(body, n_molecules, min_distance, sweeps, np.random.default_rng(seed), radius=radius)
    if xyz is None:
        raise ClusterError(f"could not place {n_molecules} molecules at {density_g_cm3:g} g/cm^3 with no atoms of "
                           f"different molecules closer than {min_distance:g} A: lower the density")
    drop = Atoms(numbers=np.tile(molecule.numbers, n_molecules), positions=xyz.reshape(-1, 3))
    drop.info.update(molecules=n_molecules, density_g_cm3=float(density_g_cm3), seed=int(seed),
                     wall_radius=float(radius))
    return drop


def _overlap(xyz_k: np.ndarray, others: np.ndarray, length: Optional[float], min_distance: float):
    """(sum of (min_distance - d)^2 over closer pairs, smallest d) between one molecule and other
    atoms, minimum image in a cube of side `length` (None: not periodic)."""
    if not len(others):
        return 0.0, np.inf
    d = xyz_k[:, None, :] - others[None, :, :]
    if length is not None:
        d -= length * np.round(d / length)
    r = np.sqrt(np.einsum("ijk,ijk->ij", d, d))
    short = np.clip(min_distance - r, 0, None)
    return float(np.sum(short ** 2)), float(r.min())


def _pack(body, n, min_distance, sweeps, rng, length=None, radius=None, tries=100):
    """(n, atoms, 3) positions of n rigid copies of `body` with no intermolecular pair closer than
    min_distance, or None: centres of mass in a periodic cube of side `length`, or in a sphere of
    `radius` about the origin."""
    def centre():
        if length is not None:
            return rng.uniform(0, length, 3)
        while True:
            c = rng.uniform(-radius, radius, 3)
            if c @ c <= radius * radius:
                return c

    def placement():
        return body @ _random_rotation(rng).T + centre()

    def inside(c):
        return length is not None or c @ c <= radius * radius

    def overlap(xyz_k, others):
        return _overlap(xyz_k, others, length, min_distance)

    xyz = np.zeros((0,) + body.shape)
    for _ in range(n):  # best of `tries` insertions
        others = xyz.reshape(-1, 3)
        best = max((placement() for _ in range(tries)), key=lambda t: overlap(t, others)[1])
        xyz = np.concatenate([xyz, best[None]])
    others_of = lambda k: np.delete(xyz, k, axis=0).reshape(-1, 3)
    stuck, best_total = 0, np.inf
    for _ in range(sweeps):
        total = sum(overlap(xyz[k], others_of(k))[0] for k in range(n))
        if total == 0.0:
            return xyz
        stuck = 0 if total < 0.999 * best_total else stuck + 1
        best_total = min(best_total, total)
        for k in rng.permutation(n):
            others = others_of(k)
            now = overlap(xyz[k], others)[0]
            if now == 0.0:
                continue
            if stuck >= 20:  # no progress: this molecule goes somewhere else
                xyz[k] = min((placement() for _ in range(tries)), key=lambda t: overlap(t, others)[0])
                continue
            for _ in range(10):
                c = xyz[k].mean(axis=0)
                axis = rng.normal(size=3)
                shift = rng.normal(0, 0.2, 3)
                if not inside(c + shift):
                    continue
                trial = _rotate(xyz[k] - c, axis / np.linalg.norm(axis), rng.normal(0, 0.3)) + c + shift
                p = overlap(trial, others)[0]
                if p < now:
                    xyz[k], now = trial, p
        if stuck >= 20:
            stuck, best_total = 0, np.inf
    return None


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation of the rows of v about a unit axis."""
    c, s = math.cos(angle), math.sin(angle)
    return v * c + np.cross(axis, v) * s + np.outer(v @ axis, axis) * (1 - c)


class SphericalWall:
    """An ASE calculator: `inner`'s energy and forces plus a soft wall that holds each molecule's
    centre of mass within `radius` A of `centre`: E = k/2 (r - radius)^2 for r > radius, with the
    force on a molecule shared among its atoms by mass (k in eV/A^2). The molecules are fixed at
    construction (lists of atom indices)."""

    def __init__(self, inner, groups: Sequence[np.ndarray], radius: float, k: float = 1.0, centre=(0.0, 0.0, 0.0)):
        from ase.calculators.calculator import Calculator

        class _Calc(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(calc, atoms=None, properties=("energy",), system_changes=()):
                Calculator.calculate(calc, atoms, properties, system_changes)
                energy = inner.get_potential_energy(calc.atoms)
                forces = inner.get_forces(calc.atoms).copy()
                e_wall, f_wall = self.wall(calc.atoms)
                calc.results = {"energy": energy + e_wall, "free_energy": energy + e_wall, "forces": forces + f_wall}

        self.groups, self.radius, self.k = [np.asarray(g) for g in groups], float(radius), float(k)
        self.centre = np.asarray(centre, dtype=float)
        self.calculator = _Calc()

    def wall(self, atoms: Atoms) -> Tuple[float, np.ndarray]:
        masses, pos = atoms.get_masses(), atoms.positions
        energy, forces = 0.0, np.zeros_like(pos)
        for g in self.groups:
            m = masses[g]
            c = (m[:, None] * pos[g]).sum(axis=0) / m.sum() - self.centre
            r = float(np.linalg.norm(c))
            if r > self.radius:
                energy += 0.5 * self.k * (r - self.radius) ** 2
                forces[g] -= self.k * (r - self.radius) * (c / r) * (m / m.sum())[:, None]
        return energy, forces


# ---- MD of the liquid -----------------------------------------------------------------------

def liquid_frames(start: Atoms, frames_path=None, calculator="gfn2-xtb", temperature=300.0, timestep_fs=1.0,
                  friction_per_fs=0.01, stride=50, equilibration=500, relax_steps=50, wall_k=1.0, seed=0,
                  progress=False) -> Iterable[Atoms]:
    """Frames of Langevin MD of a liquid box or droplet (`liquid_box`, `liquid_droplet`; a droplet,
    non-periodic with info wall_radius, is held by a `SphericalWall` of `wall_k` eV/A^2), every
    `stride` steps after `relax_steps` of FIRE (to relieve the contacts of the packing) and
    `equilibration` steps; an endless generator, the caller stops it.

    With `frames_path`, every frame is appended to that extxyz file (positions and momenta) as it
    is made, and the frames already in it are yielded first: the MD continues from the last one,
    so an interrupted run loses at most `stride` steps, and a second command (e.g. --dimers after
    --clusters) reuses the same MD. The continued MD draws new random numbers, so it is not the
    run an uninterrupted command would have made."""
    import ase.io
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from .sampling import make_calculator
    path = Path(frames_path) if frames_path is not None else None
    done = []
    if path is not None and path.exists() and path.stat().st_size:
        done = ase.io.read(path, index=":")
        for frame in done:
            yield frame
    if done:
        atoms = done[-1].copy()
        step = int(atoms.info.get("md_step", 0))
        atoms.set_momenta(done[-1].get_momenta())
    else:
        atoms, step = start.copy(), 0
    groups = molecules(atoms)
    radius = atoms.info.get("wall_radius") if not np.any(atoms.pbc) else None
    xtb = make_calculator(calculator)
    atoms.calc = SphericalWall(xtb, groups, radius, wall_k).calculator if radius else xtb
    rng = np.random.default_rng([seed, len(done)])
    from tqdm import tqdm
    if not done:
        if relax_steps:
            from ase.optimize import FIRE
            FIRE(atoms, logfile=None).run(fmax=0.5, steps=relax_steps)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=friction_per_fs / units.fs,
                   rng=rng)
    if not done and equilibration:
        with tqdm(total=equilibration, desc="equilibrating", unit="step", disable=not progress, leave=False,
                  dynamic_ncols=True) as bar:
            for _ in range(equilibration):
                dyn.run(1)
                bar.update(1)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        dyn.run(stride)
        step += stride
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                      momenta=atoms.get_momenta())
        frame.info.update({k: v for k, v in start.info.items() if k in ("molecules", "density_g_cm3", "wall_radius")})
        frame.info.update(sampler=str(calculator), temperature_K=float(temperature), md_step=step, seed=int(seed),
                          timestep_fs=float(timestep_fs))
        if path is not None:
            ase.io.write(path, frame, format="extxyz", append=True)
        yield frame


# ---- clusters and dimers --------------------------------------------------------------------

def _images(atoms: Atoms) -> np.ndarray:
    """Lattice translations to try: the 27 of -1, 0, 1 cell vectors if periodic, else the origin."""
    if not np.any(atoms.pbc):
        return np.zeros((1, 3))
    steps = [(-1, 0, 1) if p else (0,) for p in atoms.pbc]
    n = np.array(np.meshgrid(*steps, indexing="ij")).reshape(3, -1).T
    return n @ atoms.cell.array


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = a[:, None, :] - b[None, :, :]
    return float(np.sqrt(np.min(np.einsum("ijk,ijk->ij", d, d))))


def _split(frame: Atoms, molecule_size: int) -> Tuple[List[np.ndarray], np.ndarray]:
    """The molecules of a frame and its positions with each molecule whole; ClusterError if a
    molecule is not `molecule_size` atoms (a bond broken or formed)."""
    mols = molecules(frame)
    sizes = sorted({len(m) for m in mols})
    if sizes != [molecule_size]:
        raise ClusterError(f"molecules of {', '.join(map(str, sizes))} atoms, expected {molecule_size} "
                           f"(a bond broken or formed)")
    return mols, _into_cell(frame, mols, whole_positions(frame))


def _into_cell(frame: Atoms, mols: Sequence[np.ndarray], pos: np.ndarray) -> np.ndarray:
    """Whole molecules' positions with each centre of mass moved into the cell (periodic frames),
    so that the 27 images of _images find every molecule's nearest copy."""
    if frame.pbc.all():
        masses = frame.get_masses()
        for m in mols:
            centre = (masses[m, None] * pos[m]).sum(axis=0) / masses[m].sum()
            pos[m] += frame.cell.cartesian_positions(frame.cell.scaled_positions(centre[None]) % 1.0)[0] - centre
    return pos


def _nearest_images(pos: np.ndarray, mols: List[np.ndarray], centre: int, images: np.ndarray):
    """For every molecule, its positions in the periodic image closest to molecule `centre` and its
    smallest atom distance to it."""
    ref = pos[mols[centre]]
    placed, distances = [], []
    for k, m in enumerate(mols):
        if k == centre:
            placed.append(ref), distances.append(0.0)
            continue
        d = ref[:, None, None, :] - pos[m][None, :, None, :] - images[None, None, :, :]
        per_image = np.sqrt(np.einsum("abtk,abtk->abt", d, d).min(axis=(0, 1)))
        t = int(np.argmin(per_image))
        placed.append(pos[m] + images[t]), distances.append(float(per_image[t]))
    return placed, np.array(distances)


def _info_from(frame: Atoms) -> dict:
    return {k: frame.info[k] for k in ("sampler", "temperature_K", "md_step", "seed") if k in frame.info}


def cut_clusters(frame: Atoms, molecule_size: int, cutoff: float = 5.0, max_molecules: int = 3,
                 rng: Optional[np.random.Generator] = None, centres: Optional[int] = None,
                 min_molecules: Optional[int] = None) -> List[Atoms]:
    """Clusters of whole molecules cut from a liquid frame (periodic or not): for each of `centres`
    central molecules (random, distinct; None: every molecule) the central molecule and its
    neighbours, the molecules with any atom within `cutoff` A of a central atom (their periodic
    image closest to the central molecule), of which the closest (smallest atom distance) are kept
    so that the cluster has `max_molecules` molecules, or a number drawn from
    min_molecules..max_molecules. A central molecule with no neighbour gives no cluster. The
    clusters are non-periodic, centred on the central molecule's centre of mass, central molecule
    first; info: kind "cluster", molecules, neighbour_distances (A) and the frame's MD info."""
    if max_molecules < 2:
        raise ClusterError(f"a cluster needs at least 2 molecules, got max_molecules {max_molecules}")
    low = max_molecules if min_molecules is None else min_molecules
    if not 2 <= low <= max_molecules:
        raise ClusterError(f"min_molecules must be between 2 and max_molecules {max_molecules}, got {low}")
    rng = rng if rng is not None else np.random.default_rng(0)
    mols, pos = _split(frame, molecule_size)
    images = _images(frame)
    order = rng.permutation(len(mols))
    chosen = order if centres is None else order[:centres]
    out = []
    for c in chosen:
        placed, dist = _nearest_images(pos, mols, int(c), images)
        size = int(rng.integers(low, max_molecules + 1))
        keep = [int(c)] + _nearest(dist, int(c), cutoff)[:size - 1]
        if len(keep) < 2:
            continue
        out.append(_cluster(frame, mols, placed, keep, dist))
    return out


def _nearest(dist: np.ndarray, centre: int, cutoff: float) -> List[int]:
    """The molecules other than `centre` within `cutoff` A of it (`dist`: smallest atom distance
    to it), closest first."""
    return [int(k) for k in np.argsort(dist, kind="stable") if k != centre and dist[k] < cutoff]


def _cluster(frame: Atoms, mols, placed, keep: List[int], dist: np.ndarray) -> Atoms:
    """The molecules `keep` (central first) at their `placed` positions, as a non-periodic cluster
    centred on the central molecule's centre of mass."""
    numbers = np.concatenate([frame.numbers[mols[k]] for k in keep])
    cluster = Atoms(numbers=numbers, positions=np.concatenate([placed[k] for k in keep]))
    cluster.positions -= cluster[:len(mols[keep[0]])].get_center_of_mass()
    cluster.info.update(_info_from(frame))
    cluster.info.update(kind="cluster", molecules=len(keep), neighbour_distances=np.round(dist[keep[1:]], 4).tolist())
    return cluster


def cluster_around(frame: Atoms, mols: Sequence[np.ndarray], atom: int, max_molecules: int,
                   cutoff: float = 5.0) -> Atoms:
    """The cluster of whole molecules that quantum chemistry can label for one atom of a liquid
    frame (periodic or not): the atom's molecule and the up to max_molecules - 1 molecules
    closest to it (smallest atom distance, nearest periodic image) within `cutoff` A; central
    molecule first, as cut_clusters. `mols`: each molecule's atom indices from the topology the
    MD started with, not from this frame's bonds: the frames active learning picks are those
    where atoms of different molecules came too close, which the bond graph would merge."""
    if max_molecules < 1:
        raise ClusterError(f"a cluster needs at least 1 molecule, got max_molecules {max_molecules}")
    pos = frame.positions.copy()
    if frame.pbc.any():  # each molecule whole: its atoms' nearest images of its first atom
        from ase.geometry import find_mic
        for m in mols:
            pos[m] = pos[m[0]] + find_mic(pos[m] - pos[m[0]], frame.cell, frame.pbc)[0]
    mols = [np.asarray(m) for m in mols]
    centre = next(k for k, m in enumerate(mols) if atom in m)
    placed, dist = _nearest_images(_into_cell(frame, mols, pos), mols, centre, _images(frame))
    return _cluster(frame, mols, placed, [centre] + _nearest(dist, centre, cutoff)[:max_molecules - 1], dist)


def _donors_acceptors(atoms: Atoms) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the H atoms bonded to an N, O or F (donor H), and of the N, O, F atoms."""
    i, j, _ = bonds(atoms)
    hydrogens = sorted({int(h) for h, x in zip(i, j) if atoms.numbers[h] == 1 and atoms.numbers[x] in DONORS})
    return np.array(hydrogens, dtype=int), np.flatnonzero(np.isin(atoms.numbers, ACCEPTORS))


def _hbond(a_pos, a_h, a_acc, b_pos, b_h, b_acc) -> float:
    best = np.inf
    for hydrogens, acceptors in ((a_pos[a_h], b_pos[b_acc]), (b_pos[b_h], a_pos[a_acc])):
        if len(hydrogens) and len(acceptors):
            best = min(best, _min_distance(hydrogens, acceptors))
    return best


def hbond_distance(a: Atoms, b: Atoms) -> float:
    """The shortest X-H...Y distance between molecules a and b (either donating): H bonded to an
    N, O or F of one molecule, Y an N, O or F of the other; inf if there is none."""
    return _hbond(a.positions, *_donors_acceptors(a), b.positions, *_donors_acceptors(b))


def pair_contacts(frame: Atoms, molecule_size: int) -> List[dict]:
    """Every pair of molecules of a frame: {i, j, a, b (the two as non-periodic Atoms, b in its
    image closest to a), distance (smallest atom distance), hbond (X-H...Y distance)}."""
    mols, pos = _split(frame, molecule_size)
    images = _images(frame)
    donors = [_donors_acceptors(Atoms(numbers=frame.numbers[m], positions=pos[m])) for m in mols]
    pairs = []
    for i in range(len(mols)):
        placed, dist = _nearest_images(pos, mols, i, images)
        a = Atoms(numbers=frame.numbers[mols[i]], positions=placed[i])
        for j in range(i + 1, len(mols)):
            b = Atoms(numbers=frame.numbers[mols[j]], positions=placed[j])
            pairs.append(dict(i=i, j=j, a=a, b=b, distance=float(dist[j]),
                              hbond=_hbond(a.positions, *donors[i], b.positions, *donors[j])))
    return pairs


def _dimer(a: Atoms, b: Atoms, info: dict) -> Atoms:
    dimer = a + b
    dimer.positions -= dimer.get_center_of_mass()
    dimer.info.update(info)
    dimer.info.update(com_distance=round(float(np.linalg.norm(b.get_center_of_mass() - a.get_center_of_mass())), 5),
                      min_distance=round(_min_distance(a.positions, b.positions), 5))
    hb = hbond_distance(a, b)
    if np.isfinite(hb):
        dimer.info["hbond_distance"] = round(hb, 5)
    return dimer


def scan(a: Atoms, b: Atoms, factors: Sequence[float], floor: float = 1.0, info: Optional[dict] = None) -> List[Atoms]:
    """The pair (a, b) with b moved rigidly along the line through the two centres of mass to
    `factor` times their distance, for each factor; a point whose smallest atom distance would be
    below `floor` A is left out. info: kind "scan", scan_factor, com_distance, min_distance."""
    ca, cb = a.get_center_of_mass(), b.get_center_of_mass()
    out = []
    for f in factors:
        moved = b.copy()
        moved.positions += (f - 1.0) * (cb - ca)
        if _min_distance(a.positions, moved.positions) < floor:
            continue
        out.append(_dimer(a, moved, dict(info or {}, kind="scan", scan_factor=float(f))))
    return out


def dimers(frame: Atoms, molecule_size: int, rng: np.random.Generator, pairs: int = 4, contact: float = 3.0,
           hbond: float = 2.5, scan_factors: Sequence[float] = (0.9, 1.1, 1.25, 1.5, 2.0), scan_kind: str = "hbond",
           floor: float = 1.0) -> List[Atoms]:
    """Dimers from a liquid frame: up to `pairs` pairs of molecules in contact, alternately
    hydrogen-bonded (an X-H...Y distance below `hbond` A; kind "hbond") and not (smallest atom
    distance below `contact` A; kind "contact"), drawn at random from the frame's pairs of each
    kind, then the scan (`scan`) of the first pair of `scan_kind` ("hbond" or "contact"; the other
    kind if the frame has none). Non-periodic, centred on the pair's centre of mass."""
    candidates = {"hbond": [], "contact": []}
    for p in pair_contacts(frame, molecule_size):
        if p["hbond"] < hbond:
            candidates["hbond"].append(p)
        elif p["distance"] < contact:
            candidates["contact"].append(p)
    for kind in candidates:
        candidates[kind] = [candidates[kind][k] for k in rng.permutation(len(candidates[kind]))]
    chosen = []
    for n in range(pairs):
        kind = ("hbond", "contact")[n % 2]
        if not candidates[kind]:
            kind = ("contact", "hbond")[n % 2]
        if candidates[kind]:
            chosen.append((kind, candidates[kind].pop(0)))
    info = _info_from(frame)
    out = [_dimer(p["a"], p["b"], dict(info, kind=kind)) for kind, p in chosen]
    to_scan = [p for kind, p in chosen if kind == scan_kind] or [p for _, p in chosen]
    if to_scan and len(scan_factors):
        kind = next(k for k, p in chosen if p is to_scan[0])
        out += scan(to_scan[0]["a"], to_scan[0]["b"], scan_factors, floor, dict(info, scan_of=kind))
    return out


# ---- gmnn-sample --clusters / --dimers --------------------------------------------------------

def interleave(*lists: Sequence) -> list:
    """The items of all lists, each list's in its order, spread evenly: item k of a list of n goes
    to position (k + 1/2) / n of the whole, so that any prefix holds every list in about its share
    (equal lengths: a[0], b[0], a[1], b[1], ...)."""
    keyed = [((k + 0.5) / len(x), j, item) for j, x in enumerate(lists) for k, item in enumerate(x)]
    return [item for _, _, item in sorted(keyed, key=lambda t: (t[0], t[1]))]


def _check_frames(path: Path, temperature: float, n_atoms: int, periodic: bool) -> None:
    import ase.io
    if not (path.exists() and path.stat().st_size):
        return
    first = ase.io.read(path, index=0)
    made_at = first.info.get("temperature_K")
    if made_at is not None and abs(float(made_at) - temperature) > 1e-6:
        raise ClusterError(f"--frames {path} holds MD at {made_at:g} K, not {temperature:g} K: use another file")
    if len(first) != n_atoms or bool(np.any(first.pbc)) != periodic:
        what = "a periodic box" if np.any(first.pbc) else "a droplet"
        raise ClusterError(f"--frames {path} holds {what} of {len(first)} atoms, not the one asked for: use another "
                           f"file")


def sample_liquid(start, out, kind="clusters", n_molecules=16, density_g_cm3=0.785, periodic=False,
                  calculator="gfn2-xtb", temperature=300.0, timestep_fs=1.0, friction_per_fs=0.01, samples=100,
                  stride=50, equilibration=500, seed=0, frames_path=None, per_frame=4, cutoff=5.0,
                  max_molecules=3, min_molecules=None, scan_factors=(0.9, 1.1, 1.25, 1.5, 2.0), skip_frames=0,
                  progress=True) -> Tuple[int, int]:
    """gmnn-sample --clusters / --dimers: `samples` clusters (`cut_clusters`, `per_frame` central
    molecules a frame) or dimers (`dimers`, `per_frame` pairs a frame plus one scan, alternately of
    an H-bonded pair and of a contact pair) from MD frames of a droplet (or with `periodic` a box)
    of `n_molecules` copies of the molecule in `start`, written to `out` (extxyz); the first
    `skip_frames` MD frames (the liquid still equilibrating) are left out. Every configuration
    records its MD frame (info frame: its number in the MD, from 0) besides the MD's info.
    Returns (configurations written, MD frames used)."""
    import ase.io
    from tqdm import tqdm
    if kind not in ("clusters", "dimers"):
        raise ClusterError(f"kind must be 'clusters' or 'dimers', got {kind!r}")
    molecule = ase.io.read(start, index=0)
    molecule.pbc, molecule.cell = False, None
    size = len(molecule)
    build = liquid_box if periodic else liquid_droplet
    liquid = build(molecule, n_molecules, density_g_cm3, seed)
    if frames_path is not None:
        _check_frames(Path(frames_path), temperature, len(liquid), periodic)
    frames = liquid_frames(liquid, frames_path, calculator, temperature, timestep_fs, friction_per_fs, stride,
                           equilibration, seed=seed, progress=progress)
    rng = np.random.default_rng([seed, 2])
    made, used, skipped = [], 0, 0
    bar = tqdm(total=samples, desc=kind, unit="conf", disable=not progress, dynamic_ncols=True)
    try:
        for index, frame in enumerate(frames):  # the next frame may cost an MD stride: ask only when needed
            if index < skip_frames:
                continue
            used += 1
            try:
                if kind == "clusters":
                    new = cut_clusters(frame, size, cutoff, max_molecules, rng, centres=per_frame,
                                       min_molecules=min_molecules)
                else:
                    new = dimers(frame, size, rng, pairs=per_frame, scan_factors=scan_factors,
                                 scan_kind=("hbond", "contact")[used % 2])
            except ClusterError:
                skipped += 1  # a bond broke or formed in this frame
                if skipped > 10 and skipped > used // 2:
                    raise ClusterError(f"{skipped} of {used} MD frames have molecules whose bonds broke or formed: "
                                       f"lower --temperature or --timestep") from None
                continue
            for config in new[:samples - len(made)]:
                config.info["frame"] = index
                made.append(config)
            bar.update(min(len(new), bar.total - bar.n))
            if len(made) >= samples:
                break
    finally:
        bar.close()
        frames.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out, made, format="extxyz")
    return len(made), used
