"""Normal-mode sampling (gmnn-sample --normal-modes): geometries displaced from a minimum along
the normal modes of the calculator's (GFN2-xTB's) Hessian, with thermal amplitudes.

The Hessian is by central finite differences of the forces (`hessian`; 6N force calls; tblite's
Python interface gives no analytic Hessian). `normal_modes` mass-weights it and diagonalises it
in the space orthogonal to the rigid-body motions (3 translations and 3 rotations, 2 for a
linear molecule), so the internal modes N_f = 3N-6 (3N-5) are exact. `minimum` relaxes tightly
and, where an imaginary mode remains (a saddle point), steps along it and relaxes again.

Amplitudes (`displace`), with q_i the mass-weighted normal coordinate of mode i and w_i its
angular frequency, so that the harmonic energy is sum_i w_i^2 q_i^2 / 2:
- "boltzmann" (default): the harmonic canonical ensemble: q_i ~ Normal(0, k_B T / w_i^2), so each
  mode holds k_B T / 2 on average and the mean harmonic energy is N_f k_B T / 2 (equipartition).
- "ani": the normal-mode sampling of ANI-1 (Smith, Isayev, Roitberg, Chem. Sci. 8, 3192 (2017)):
  coefficients c_i >= 0 with sum c_i = u, u ~ Uniform(0, 1), spread uniformly over the simplex;
  q_i = +-sqrt(3 c_i N k_B T) / w_i with a random sign, so the harmonic energy is 3 u N k_B T / 2
  (at most 3 N k_B T / 2, on average 3 N k_B T / 4).
Modes softer than `min_frequency` (cm^-1) are displaced as if they had that frequency: a
rectilinear step along a torsion stretches bonds, and would otherwise be huge. A displaced
geometry in which a bond (covalent radii, as for `molecules.relax`) broke or formed, or two atoms
came closer than half the sum of their covalent radii, is drawn again.
"""
from typing import List, NamedTuple, Optional

import numpy as np
from ase import Atoms, units

# eigenvalue of the mass-weighted Hessian (eV / A^2 / amu) -> frequency: hbar w (eV) = S sqrt(lambda)
HBAR_OMEGA = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
SCHEMES = ("boltzmann", "ani")


class NormalModeError(ValueError):
    """A molecule or option that cannot give normal-mode samples; the message is one line."""


class NormalModes(NamedTuple):
    atoms: Atoms               # the minimum
    eigenvalues: np.ndarray    # (N_f,) of the mass-weighted Hessian in the internal space, eV/A^2/amu
    vectors: np.ndarray        # (N_f, N, 3) mass-weighted unit vectors of the modes
    masses: np.ndarray         # (N,) amu

    @property
    def frequencies(self) -> np.ndarray:
        """cm^-1, imaginary ones negative."""
        return to_wavenumbers(self.eigenvalues)


def to_wavenumbers(eigenvalues) -> np.ndarray:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return np.sign(lam) * HBAR_OMEGA * np.sqrt(np.abs(lam)) / units.invcm


def from_wavenumber(cm: float) -> float:
    return float((cm * units.invcm / HBAR_OMEGA) ** 2)


def hessian(atoms: Atoms, calculator, delta: float = 0.005) -> np.ndarray:
    """(3N, 3N) eV/A^2 by central differences of the forces (step `delta` A), symmetrised."""
    probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    probe.calc = calculator
    x0 = probe.positions.copy()
    n = 3 * len(probe)
    h = np.zeros((n, n))
    for k in range(n):
        columns = []
        for sign in (1, -1):
            x = x0.copy()
            x.flat[k] += sign * delta
            probe.positions = x
            columns.append(probe.get_forces().ravel())
        h[:, k] = -(columns[0] - columns[1]) / (2 * delta)
    return (h + h.T) / 2


def rigid_body_basis(atoms: Atoms) -> np.ndarray:
    """(3N, 6) or (3N, 5) for a linear molecule: orthonormal mass-weighted translations and rotations.
    A rotation counts if its mass-weighted length, the square root of a principal moment of
    inertia, is at least 0.1 sqrt(amu) A (moment 0.01 amu A^2: a relaxed linear molecule is far
    below, the flattest non-linear C, H, N, O molecule far above)."""
    m = np.sqrt(atoms.get_masses())
    r = atoms.positions - atoms.get_center_of_mass()
    vectors = []
    for axis in np.eye(3):
        vectors.append((m[:, None] * axis[None, :]).ravel())
        vectors.append((m[:, None] * np.cross(axis[None, :], r)).ravel())
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s >= 0.1]


def normal_modes(atoms: Atoms, calculator, delta: float = 0.005, h: Optional[np.ndarray] = None) -> NormalModes:
    """The internal normal modes of `atoms` (which should be a minimum: see `minimum`), lowest first."""
    if len(atoms) < 2:
        raise NormalModeError("a single atom has no normal modes")
    h = hessian(atoms, calculator, delta) if h is None else h
    masses = atoms.get_masses()
    w = 1 / np.sqrt(np.repeat(masses, 3))
    hm = w[:, None] * h * w[None, :]
    rigid = rigid_body_basis(atoms)
    projector = np.eye(len(hm)) - rigid @ rigid.T
    vals, vecs = np.linalg.eigh(projector)
    internal = vecs[:, vals > 0.5]  # the orthonormal complement of the rigid-body motions
    lam, v = np.linalg.eigh(internal.T @ hm @ internal)
    vectors = (internal @ v).T.reshape(len(lam), len(atoms), 3)
    return NormalModes(Atoms(numbers=atoms.numbers, positions=atoms.positions, info=dict(atoms.info)), lam,
                       vectors, masses)


def minimum(atoms: Atoms, calculator, fmax: float = 1e-4, steps: int = 3000, imaginary_cm: float = 20.0,
            tries: int = 3, delta: float = 0.005) -> NormalModes:
    """Relax `atoms` tightly (`molecules.relax`, fmax eV/A) and return its normal modes; while a mode
    is imaginary beyond `imaginary_cm` cm^-1 (a saddle point), step 0.1 A (largest atom) along it
    and relax again, at most `tries` times. (fmax 1e-3 eV/A is not tight enough: methyl
    propanoate's O-CH3 rotor, nearly free in GFN2-xTB, then keeps a mode at ~30i cm^-1; at 1e-4, 4i.)"""
    from .molecules import relax
    current = atoms
    for attempt in range(tries + 1):
        current = relax(current, calculator, fmax=fmax, steps=steps)
        modes = normal_modes(current, calculator, delta)
        lowest = modes.frequencies[0]
        if lowest > -imaginary_cm:
            return modes
        if attempt == tries:
            break
        step = modes.vectors[0] / np.sqrt(modes.masses)[:, None]
        current = Atoms(numbers=current.numbers, positions=current.positions + 0.1 * step /
                        np.linalg.norm(step, axis=1).max(), info=dict(current.info))
    what = atoms.info.get("smiles", atoms.get_chemical_formula())
    raise NormalModeError(f"{what}: no minimum found, a mode of {lowest:.0f}i cm^-1 remains after {tries} steps "
                          f"along it")


def _coefficients(rng: np.random.Generator, n: int) -> np.ndarray:
    """ANI-1's c_i: n spacings of sorted uniform numbers on [0, u], u ~ Uniform(0, 1)."""
    u = rng.uniform()
    cuts = np.sort(rng.uniform(size=n - 1)) if n > 1 else np.zeros(0)
    return u * np.diff(np.concatenate([[0.0], cuts, [1.0]]))


def _whole(atoms: Atoms, reference: set) -> bool:
    from ase.data import covalent_radii
    from .molecules import bond_set
    if bond_set(atoms) != reference:
        return False
    radii = covalent_radii[atoms.numbers]
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.inf)
    return bool(np.all(d >= 0.5 * (radii[:, None] + radii[None, :])))


def displace(modes: NormalModes, temperature: float, samples: int, seed: int = 0, scheme: str = "boltzmann",
             min_frequency: float = 100.0, max_tries: int = 100) -> List[Atoms]:
    """`samples` geometries displaced from `modes.atoms` with thermal amplitudes at `temperature` K
    (module docstring for the schemes). info: sampler "normal-modes", scheme, temperature_K, seed,
    sample (its number), harmonic_energy (eV, the displacement's harmonic energy with the floored
    frequencies). A NormalModeError if fewer than 1 in `max_tries` draws keep the molecule whole."""
    if scheme not in SCHEMES:
        raise NormalModeError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise NormalModeError(f"temperature must be a positive number of K, got {temperature}")
    kt = units.kB * temperature
    lam = np.maximum(modes.eigenvalues, from_wavenumber(min_frequency))
    n_f, n_atoms = len(lam), len(modes.atoms)
    inverse_sqrt_mass = 1 / np.sqrt(modes.masses)[:, None]
    from .molecules import bond_set
    reference = bond_set(modes.atoms)
    rng = np.random.default_rng(seed)
    out, draws = [], 0
    while len(out) < samples:
        draws += 1
        if draws > max_tries * samples and draws > max_tries:
            raise NormalModeError(f"only {len(out)} of {draws} displaced geometries kept the molecule whole at "
                                  f"{temperature:g} K: lower the temperature or raise --min-frequency")
        if scheme == "boltzmann":
            q = rng.normal(size=n_f) * np.sqrt(kt / lam)
        else:
            signs = rng.choice((-1.0, 1.0), size=n_f)
            q = signs * np.sqrt(3 * _coefficients(rng, n_f) * n_atoms * kt / lam)
        shift = np.einsum("i,iaj->aj", q, modes.vectors) * inverse_sqrt_mass
        frame = Atoms(numbers=modes.atoms.numbers, positions=modes.atoms.positions + shift)
        if not _whole(frame, reference):
            continue
        frame.info.update({k: v for k, v in modes.atoms.info.items() if k in ("smiles", "name")})
        frame.info.update(sampler="normal-modes", scheme=scheme, temperature_K=float(temperature), seed=int(seed),
                          sample=len(out), harmonic_energy=round(float(0.5 * np.sum(lam * q * q)), 6))
        out.append(frame)
    return out


def sample_normal_modes(start: Atoms, out, calculator="gfn2-xtb", temperature: float = 300.0, samples: int = 100,
                        seed: int = 0, scheme: str = "boltzmann", min_frequency: float = 100.0,
                        delta: float = 0.005) -> NormalModes:
    """gmnn-sample --normal-modes: the `minimum` near `start` with `calculator`, then `displace`, written
    to `out` (extxyz). Returns the normal modes."""
    import ase.io
    from pathlib import Path
    from .sampling import make_calculator
    calc = make_calculator(calculator) if isinstance(calculator, str) else calculator
    modes = minimum(start, calc, delta=delta)
    frames = displace(modes, temperature, samples, seed, scheme, min_frequency)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out, frames, format="extxyz")
    return modes
