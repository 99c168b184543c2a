"""Structure and dynamics of a molecular liquid from MD frames (ASE Atoms with cells): radial
distribution functions with their first peak and coordination number, hydrogen bonds, molecular
self-diffusion with the finite-size correction, density.

Frames come from any trajectory ASE reads (a LAMMPS dump: `ase.io.read(path, ":",
format="lammps-dump-text")`, with the elements set from the atom types). Molecules are found once,
from the bonds of the first frame (covalent radii), and must stay whole by index; positions may
be wrapped into the cell (every function applies the minimum image or unwraps). Cells may change
from frame to frame (NPT): each frame is normalised with its own volume.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from .clusters import density_g_cm3  # noqa: F401 (part of this module's toolbox: liquid_md uses it)
from .clusters import molecules as molecules_of
BOLTZMANN = 1.380649e-23       # J/K
YEH_HUMMER_XI = 2.837297       # cubic box, Yeh & Hummer, J. Phys. Chem. B 108, 15873 (2004)


def molecule_ids(atoms, scale: float = 1.15) -> np.ndarray:
    """Molecule index of every atom (0..M-1, in order of first atom): the molecules of
    clusters.molecules (bonds within `scale` x the sum of covalent radii, minimum image)."""
    ids = np.empty(len(atoms), dtype=int)
    for m, members in enumerate(molecules_of(atoms, scale)):
        ids[members] = m
    return ids


def broken_molecules(atoms, molecules: np.ndarray, scale: float = 1.15) -> int:
    """How many of the reference `molecules` (e.g. as built) are not one bonded unit in `atoms`:
    a bond stretched past `scale` x the covalent radii splits a molecule (a model failing)."""
    now = molecule_ids(atoms, scale)
    return sum(len(np.unique(now[molecules == m])) > 1 for m in range(int(molecules.max()) + 1))


def _mic(vectors: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image vectors (..., 3) in a general cell (rows are the lattice vectors): fractional
    coordinates wrapped to [-1/2, 1/2), which is exact when no image within r_max is missed
    (r_max <= half the smallest cell height, checked by radial_distribution)."""
    fractional = vectors @ np.linalg.inv(cell)
    fractional -= np.round(fractional)
    return fractional @ cell


def _heights(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


@dataclass
class RDF:
    r: np.ndarray             # bin centres, Å
    g: np.ndarray             # g_ab(r)
    coordination: np.ndarray  # running coordination number n_ab(r) at the bin's outer edge
    edges: np.ndarray

    def first_peak(self):
        """(r of the first maximum, r of the minimum after it, coordination number there)."""
        peak = int(np.argmax(self.g > 0.5 * self.g.max()))  # start of the first peak region
        while peak + 1 < len(self.g) and self.g[peak + 1] >= self.g[peak]:
            peak += 1
        minimum = peak
        while minimum + 1 < len(self.g) and self.g[minimum + 1] <= self.g[minimum]:
            minimum += 1
        return float(self.r[peak]), float(self.r[minimum]), float(self.coordination[minimum])


def _selected(atoms, which) -> np.ndarray:
    if isinstance(which, str):
        return np.flatnonzero(np.array(atoms.get_chemical_symbols()) == which)
    return np.asarray(which)


def radial_distribution(frames: Sequence, a: Union[str, Sequence[int]], b: Union[str, Sequence[int]], r_max: float,
                        n_bins: int = 200, molecules: Optional[np.ndarray] = None) -> RDF:
    """g_ab(r) averaged over the frames, a and b each an element or a list of atom indices (e.g.
    the hydroxyl H only); with `molecules`, pairs within one molecule are left out (the
    intermolecular g), and g tends to 1 at large r either way: each frame is normalised by the
    number of pairs it counts and its own volume."""
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    normalised = np.zeros(n_bins)
    n_a_total = 0
    shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    for atoms in frames:
        ia, ib = _selected(atoms, a), _selected(atoms, b)
        cell = np.asarray(atoms.cell.array)
        if r_max > 0.5 * _heights(cell).min() + 1e-9:
            raise ValueError(f"r_max {r_max} Å is more than half the cell's smallest height "
                             f"({0.5 * _heights(cell).min():.2f} Å): images would be missed")
        positions = atoms.positions
        d = np.linalg.norm(_mic(positions[ib][None, :, :] - positions[ia][:, None, :], cell), axis=-1)
        keep = ia[:, None] != ib[None, :]
        if molecules is not None:
            keep &= molecules[ia][:, None] != molecules[ib][None, :]
        counts = np.histogram(d[keep], bins=edges)[0]
        volume = abs(np.linalg.det(cell))
        hist += counts
        normalised += counts * volume / (keep.sum() * shells)
        n_a_total += len(ia)
    g = normalised / len(frames)
    return RDF(r=0.5 * (edges[1:] + edges[:-1]), g=g, coordination=np.cumsum(hist) / n_a_total, edges=edges)


def hydrogen_bonds(frames: Sequence, molecules: np.ndarray, donor: str = "O", acceptor: str = "O",
                   r_da: float = 3.5, angle_deg: float = 30.0, r_dh: float = 1.2) -> np.ndarray:
    """Intermolecular hydrogen bonds in each frame (geometric criterion, as common for alcohols
    and water): donor-acceptor distance <= r_da and the angle between D-H and D->A <= angle_deg,
    for every H within r_dh of a donor of its own molecule. Returns the count per frame; hydrogen
    bonds per molecule are 2 x count / molecules (each bond counted for both partners)."""
    counts = []
    for atoms in frames:
        symbols = np.array(atoms.get_chemical_symbols())
        cell = np.asarray(atoms.cell.array)
        x = atoms.positions
        donors, acceptors, hydrogens = (np.flatnonzero(symbols == donor), np.flatnonzero(symbols == acceptor),
                                        np.flatnonzero(symbols == "H"))
        dh = _mic(x[hydrogens][None, :, :] - x[donors][:, None, :], cell)
        bonded = (np.linalg.norm(dh, axis=-1) < r_dh) & (molecules[donors][:, None] == molecules[hydrogens][None, :])
        da = _mic(x[acceptors][None, :, :] - x[donors][:, None, :], cell)
        da_length = np.linalg.norm(da, axis=-1)
        other = molecules[donors][:, None] != molecules[acceptors][None, :]
        n = 0
        for k, j in zip(*np.nonzero(bonded)):
            u = dh[k, j] / np.linalg.norm(dh[k, j])
            close = other[k] & (da_length[k] <= r_da)
            cosines = da[k, close] @ u / da_length[k, close]
            n += int(np.sum(cosines >= np.cos(np.radians(angle_deg))))
        counts.append(n)
    return np.array(counts)


def unwrapped_centres(frames: Sequence, molecules: np.ndarray) -> np.ndarray:
    """Molecular centres of mass (frames, M, 3), continuous in time: every atom is unwrapped
    from frame to frame in fractional coordinates (an atom must move less than half a cell
    between frames), then each molecule's centre is its mass-weighted mean."""
    first = frames[0]
    masses = first.get_masses()
    n_mol = int(molecules.max()) + 1
    total = np.bincount(molecules, weights=masses, minlength=n_mol)
    fractional = first.get_scaled_positions(wrap=False)
    images = np.zeros_like(fractional)
    # whole molecules in the first frame: each atom taken to the image nearest its molecule's first atom
    anchor = np.array([np.flatnonzero(molecules == m)[0] for m in range(n_mol)])
    images -= np.round(fractional - fractional[anchor[molecules]])
    out = []
    previous = fractional
    for atoms in frames:
        fractional = atoms.cell.scaled_positions(atoms.positions)
        images -= np.round(fractional - previous)
        previous = fractional
        x = (fractional + images) @ np.asarray(atoms.cell.array)
        centres = np.stack([np.bincount(molecules, weights=masses * x[:, k], minlength=n_mol) for k in range(3)], 1)
        out.append(centres / total[:, None])
    return np.array(out)


@dataclass
class Diffusion:
    lag_ps: np.ndarray
    msd_A2: np.ndarray
    coefficient_m2_s: float       # from the fitted slope, in the periodic box
    fit_window_ps: tuple

    def corrected(self, temperature_K: float, viscosity_Pa_s: float, box_length_A: float) -> float:
        """Yeh-Hummer finite-size correction for a cubic box: D + xi k_B T / (6 pi eta L)."""
        return self.coefficient_m2_s + YEH_HUMMER_XI * BOLTZMANN * temperature_K / (
            6.0 * np.pi * viscosity_Pa_s * box_length_A * 1e-10)


def self_diffusion(centres: np.ndarray, dt_ps: float, fit_from: float = 0.2, fit_to: float = 0.6) -> Diffusion:
    """D from the Einstein relation, MSD(t) = 6 D t, for centres (frames, M, 3) in Å, dt_ps apart:
    the MSD averaged over molecules and time origins, the slope fitted between fit_from and fit_to
    of the longest lag (short lags are ballistic, long lags have few origins)."""
    n = len(centres)
    lags = np.arange(1, n)
    msd = np.array([np.mean(np.sum((centres[k:] - centres[:-k]) ** 2, axis=-1)) for k in lags])
    lo, hi = max(1, int(fit_from * (n - 1))), max(2, int(fit_to * (n - 1)))
    t = lags * dt_ps
    slope = np.polyfit(t[lo - 1:hi], msd[lo - 1:hi], 1)[0]   # Å²/ps
    return Diffusion(lag_ps=t, msd_A2=msd, coefficient_m2_s=slope / 6.0 * 1e-8, fit_window_ps=(t[lo - 1], t[hi - 1]))


def symbols_from_types(frames: Sequence, elements: List[str]) -> None:
    """Set the chemical symbols of LAMMPS dump frames (ASE reads types as atomic numbers 1, 2, ...)
    from the pair_coeff element order."""
    for atoms in frames:
        types = atoms.get_atomic_numbers()
        atoms.set_chemical_symbols([elements[t - 1] for t in types])
