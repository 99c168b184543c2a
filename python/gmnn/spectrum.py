"""Vibrational density of states from the velocity autocorrelation of an MD trajectory.

VDOS(nu) = | FFT_t [ sum_i m_i <v_i(0) . v_i(t)> ] |, computed by the Wiener-Khinchin route
(|FFT of each velocity component|^2, mass-weighted, summed), with a Hann window against
spectral leakage. Frequencies in cm^-1. Trajectories: LAMMPS text dumps with columns
`id type vx vy vz` (and optionally mass), or any ASE trajectory/extxyz that stores velocities.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

C_CM_PER_FS = 2.99792458e-5  # speed of light in cm/fs

BANDS = {"C-H stretch": (2600.0, 3400.0), "O-H stretch": (3300.0, 4200.0)}


@dataclass
class Spectrum:
    wavenumber: np.ndarray   # cm^-1
    intensity: np.ndarray    # arbitrary units, max 1

    def peak(self, lo: float, hi: float) -> float:
        """Wavenumber of the intensity maximum in [lo, hi] cm^-1."""
        mask = (self.wavenumber >= lo) & (self.wavenumber <= hi)
        if not mask.any():
            return float("nan")
        return float(self.wavenumber[mask][np.argmax(self.intensity[mask])])


def vdos(velocities: np.ndarray, dt_fs: float, masses: Optional[np.ndarray] = None) -> Spectrum:
    """velocities: (frames, atoms, 3) sampled every dt_fs femtoseconds."""
    v = np.asarray(velocities, dtype=np.float64)
    if v.ndim != 3 or v.shape[0] < 8:
        raise ValueError(f"need (frames >= 8, atoms, 3) velocities, got shape {v.shape}")
    v = v - v.mean(axis=0)
    window = np.hanning(v.shape[0])[:, None, None]
    power = np.abs(np.fft.rfft(v * window, axis=0)) ** 2
    weights = np.ones(v.shape[1]) if masses is None else np.asarray(masses, dtype=np.float64)
    intensity = np.einsum("fac,a->f", power, weights)
    wavenumber = np.fft.rfftfreq(v.shape[0], d=dt_fs) / C_CM_PER_FS
    return Spectrum(wavenumber, intensity / intensity.max())


def read_lammps_velocities(path) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(velocities (frames, atoms, 3), types, masses or None) from a LAMMPS text dump, sorted by id."""
    frames, types, masses = [], None, None
    with open(path) as f:
        lines = f.readlines()
    k = 0
    while k < len(lines):
        if lines[k].startswith("ITEM: NUMBER OF ATOMS"):
            n = int(lines[k + 1])
        elif lines[k].startswith("ITEM: ATOMS"):
            cols = lines[k].split()[2:]
            try:
                ci, ct, cv = cols.index("id"), cols.index("type"), [cols.index(c) for c in ("vx", "vy", "vz")]
            except ValueError:
                raise ValueError(f"{path}: dump needs columns id type vx vy vz, has {cols}") from None
            block = np.array([l.split() for l in lines[k + 1:k + 1 + n]], dtype=np.float64)
            if len(block) < n:
                break  # a torn last frame of a killed run
            order = np.argsort(block[:, ci])
            frames.append(block[order][:, cv])
            types = block[order, ct].astype(int)
            if "mass" in cols:
                masses = block[order, cols.index("mass")]
            k += n
        k += 1
    if not frames:
        raise ValueError(f"{path}: no complete frames")
    return np.stack(frames), types, masses


def band_positions(spectrum: Spectrum, bands: Dict[str, Tuple[float, float]] = BANDS) -> Dict[str, float]:
    return {name: spectrum.peak(lo, hi) for name, (lo, hi) in bands.items()}


def plot_spectra(spectra: Dict[str, Spectrum], path, xmin: float = 400.0, xmax: float = 4200.0,
                 title: str = "") -> Path:
    """Spectra stacked with offsets, each scaled to its maximum inside [xmin, xmax] (below ~400
    cm^-1 free translation and rotation of molecules would dwarf the vibrations); band
    windows of BANDS shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (name, s) in enumerate(spectra.items()):
        mask = (s.wavenumber >= xmin) & (s.wavenumber <= xmax)
        y = s.intensity[mask] / s.intensity[mask].max()
        line, = ax.plot(s.wavenumber[mask], y + 1.1 * k, label=name)
        for lo, hi in BANDS.values():
            ax.axvline(s.peak(lo, hi), ymin=0, ymax=1, color=line.get_color(), lw=0.6, ls=":")
    for lo, hi in BANDS.values():
        ax.axvspan(lo, hi, color="0.93", zorder=-1)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("VDOS (offset per model)")
    ax.set_yticks([])
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
