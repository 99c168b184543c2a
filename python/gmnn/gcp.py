"""gCP: the geometrical counterpoise correction of a small basis set's superposition error (BSSE).

A small basis (def2-SVP) lets each atom borrow its neighbours' basis functions, so molecules bind
too strongly: the liquid made from such labels is too dense. Kruse and Grimme's gCP (J. Chem. Phys.
136, 154101 (2012)) estimates the counterpoise correction from the geometry alone,

    E_gCP = sigma * sum_a sum_{b != a} e_miss(a) * exp(-alpha R_ab^beta) / sqrt(N_virt(b) * S_ab)

with R_ab in bohr, e_miss(a) the energy atom a loses to basis incompleteness, N_virt(b) = basis
functions - electrons/2 of atom b, S_ab the overlap of s-type Slater functions (exponents scaled by
eta). E_gCP is positive (it undoes over-binding); forces come from autograd. Adding it to the
labels of a DFT/def2-SVP data set makes the network learn the counterpoise-corrected surface, so
nothing changes at run time (D3 is added there as before).

Parameters: the tables of the reference program (github.com/grimme-lab/gcp, setparam/setzet) for
def2-SVP, elements H-Ar; the four global parameters for DFT ("dft/svp", fitted with B3LYP) and for
GGAs ("gga/svp", fitted with BLYP). tests/test_gcp.py checks the energy against that program's own
test value (MB16-43 molecule 17, dft/def2-svp) and the forces against finite differences.
"""
from __future__ import annotations

import numpy as np
import torch

BOHR = 0.52917721090380   # Å (CODATA 2018; the geometry's unit only)
HARTREE = 27.211386245988  # eV

# sigma, eta, alpha, beta
PARAMETERS = {"dft/def2-svp": (0.2990, 1.2605, 0.6438, 1.3694),
              "gga/def2-svp": (0.6823, 1.2491, 0.8225, 1.2811)}

# def2-SVP, H-Ar: e_miss (Hartree), number of basis functions
_EMISS = np.array([0.008107, 0.008045,
                   0.113583, 0.028371, 0.049369, 0.055376, 0.072785, 0.100310, 0.133273, 0.173600,
                   0.181140, 0.125558, 0.167188, 0.149843, 0.145396, 0.164308, 0.182990, 0.205668])
_NBAS = np.array([5, 5, 9, 9] + [14] * 6 + [15, 18] + [18] * 6)
# Slater exponents: s for H, He; mean of s and p for Li-Ar (before the eta scaling)
_ZS = np.array([1.2000, 1.6469, 0.6534, 1.0365, 1.3990, 1.7210, 2.0348, 2.2399, 2.5644, 2.8812,
                0.8675, 1.1935, 1.5143, 1.7580, 1.9860, 2.1362, 2.3617, 2.5796])
_ZP = np.array([0.0, 0.0, 0.5305, 0.8994, 1.2685, 1.6105, 1.9398, 2.0477, 2.4022, 2.7421,
                0.6148, 0.8809, 1.1660, 1.4337, 1.6755, 1.7721, 2.0176, 2.2501])
_ZETA = np.where(np.arange(1, 19) <= 2, _ZS, (_ZS + _ZP) / 2)
MAX_Z = len(_EMISS)
CUTOFF = 60.0  # bohr, as the reference program

# B_k(x) = int_{-1}^{1} t^k exp(-x t) dt by Gauss-Legendre quadrature: exact to rounding for the
# |x| gCP meets (the integrand is entire), and one formula whether or not the exponents differ.
_NODES, _WEIGHTS = (torch.tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(40))


def _a(k: int, x: torch.Tensor) -> torch.Tensor:
    """A_k(x) = int_1^inf t^k exp(-x t) dt = exp(-x) sum_m k!/(k-m)! / x^(m+1)."""
    total, coefficient = torch.zeros_like(x), 1.0
    for m in range(k + 1):
        total = total + coefficient / x ** (m + 1)
        coefficient *= k - m
    return torch.exp(-x) * total


def _b(k: int, x: torch.Tensor) -> torch.Tensor:
    t = _NODES
    return (_WEIGHTS * t ** k * torch.exp(-x[:, None] * t)).sum(-1)


def _shell(z: np.ndarray) -> np.ndarray:
    return np.where(z <= 2, 1, np.where(z <= 10, 2, 3))


def slater_overlap(r: torch.Tensor, za: torch.Tensor, zb: torch.Tensor, na: np.ndarray, nb: np.ndarray):
    """Overlap of normalised ns Slater functions (n = 1, 2, 3 from `na`, `nb`) with exponents `za`,
    `zb` at distance `r` (bohr), by the A/B auxiliary integrals (elliptic coordinates)."""
    swap = torch.as_tensor(na > nb)
    za, zb = torch.where(swap, zb, za), torch.where(swap, za, zb)
    na, nb = np.minimum(na, nb), np.maximum(na, nb)
    ax, bx = (za + zb) * r / 2, (zb - za) * r / 2
    A = {k: _a(k, ax) for k in range(7)}
    B = {k: _b(k, bx) for k in range(7)}
    out = torch.zeros_like(r)
    kind = torch.as_tensor(na * 10 + nb)
    forms = {
        11: lambda: 0.25 * torch.sqrt((za * zb * r * r) ** 3) * (A[2] * B[0] - B[2] * A[0]),
        12: lambda: np.sqrt(1 / 3) * torch.sqrt(za ** 3 * zb ** 5) * r ** 4 / 8
        * (A[3] * B[0] - B[3] * A[0] + A[2] * B[1] - B[2] * A[1]),
        22: lambda: torch.sqrt((za * zb) ** 5) * r ** 5 / 16 * (A[4] * B[0] + B[4] * A[0] - 2 * A[2] * B[2]) / 3,
        13: lambda: torch.sqrt(za ** 3 * zb ** 7 / 7.5) * r ** 5 / 16
        * (A[4] * B[0] - B[4] * A[0] + 2 * (A[3] * B[1] - B[3] * A[1])) / np.sqrt(3),
        23: lambda: torch.sqrt(za ** 5 * zb ** 7 / 7.5) * r ** 6 / 32
        * (A[5] * B[0] + A[4] * B[1] - 2 * (A[3] * B[2] + A[2] * B[3]) + A[1] * B[4] + A[0] * B[5]) / 3,
        33: lambda: torch.sqrt((za * zb * r * r) ** 7) / 1440
        * (A[6] * B[0] - 3 * (A[4] * B[2] - A[2] * B[4]) - A[0] * B[6]),
    }
    for code, form in forms.items():
        out = torch.where(kind == code, form(), out)
    return out


def energy_and_forces(numbers, positions, parameters: str = "dft/def2-svp"):
    """E_gCP (eV) and its forces (eV/Å) of one isolated structure (positions in Å)."""
    numbers = np.asarray(numbers)
    if numbers.min() < 1 or numbers.max() > MAX_Z:
        raise ValueError(f"gCP: def2-SVP parameters here cover H-Ar (Z 1-{MAX_Z}), got Z = {numbers.max()}")
    if parameters not in PARAMETERS:
        raise ValueError(f"gCP: unknown parameters {parameters!r}; known: {', '.join(PARAMETERS)}")
    sigma, eta, alpha, beta = PARAMETERS[parameters]
    pos = torch.tensor(np.asarray(positions, float) / BOHR, requires_grad=True)
    distances = np.linalg.norm(pos.detach().numpy()[:, None] - pos.detach().numpy()[None], axis=-1)
    i, j = np.where(~np.eye(len(numbers), dtype=bool) & (distances < CUTOFF))
    zi, zj = numbers[i] - 1, numbers[j] - 1
    r = torch.linalg.norm(pos[i] - pos[j], dim=1)
    zeta = torch.tensor(_ZETA * eta)
    overlap = slater_overlap(r, zeta[zi], zeta[zj], _shell(numbers[i]), _shell(numbers[j]))
    # far pairs: the overlap underflows or cancels to <= 0, and exp(-alpha R^beta) is nothing
    significant = overlap > 1e-200
    overlap = torch.where(significant, overlap, torch.ones_like(overlap))
    n_virt = torch.tensor(_NBAS[zj] - 0.5 * numbers[j], dtype=torch.float64)
    emiss = torch.tensor(_EMISS[zi])
    terms = emiss * torch.exp(-alpha * r ** beta) / torch.sqrt(n_virt * overlap)
    energy = sigma * torch.where(significant, terms, torch.zeros_like(terms)).sum()
    (grad,) = torch.autograd.grad(energy, pos)
    return float(energy.detach()) * HARTREE, -grad.numpy() * HARTREE / BOHR


def corrected(atoms, parameters: str = "dft/def2-svp"):
    """A copy of labelled `atoms` (energy, forces) with gCP added to both: the labels of
    "DFT-gCP/def2-SVP"; info["gcp"] names the parameters (a second correction is refused)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    if "gcp" in atoms.info:
        raise ValueError(f"gCP: these labels already carry gCP ({atoms.info['gcp']})")
    energy, forces = energy_and_forces(atoms.numbers, atoms.positions, parameters)
    out = atoms.copy()
    out.info["gcp"] = parameters
    out.calc = SinglePointCalculator(out, energy=atoms.get_potential_energy() + energy,
                                     forces=atoms.get_forces() + forces)
    return out
