"""Reference labels from quantum chemistry: GFN2-xTB (tblite), HF/DFT/MP2/CCSD/CCSD(T) (PySCF).

A level of theory is written "method/basis" ("pbe/def2-svp", "ccsd(t)/cc-pvdz", "hf/sto-3g",
"mp2/cc-pvdz") or "gfn2-xtb" / "gfn1-xtb". Any method that is not HF, MP2, CCSD or CCSD(T)
is passed to PySCF as a DFT functional. Defaults: density fitting for DFT (`density_fit`),
all electrons correlated (`frozen_core=False`), closed-shell neutral molecules.

`label_file` runs structures in parallel processes and appends every finished structure at
once to an extxyz file (energy in eV, forces in eV/A, `level=` and `source_index=` in the
comment line); a re-run skips the structures already in the file, so an interrupted run
loses at most the structures in flight. Requires `pip install gmnn[qc]` (pyscf, tblite).
"""
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

CORRELATED = ("hf", "mp2", "ccsd", "ccsd(t)")
XTB = ("gfn2-xtb", "gfn1-xtb")


@dataclass(frozen=True)
class Level:
    method: str                 # "pbe", "ccsd(t)", "gfn2-xtb", ...
    basis: Optional[str]        # None for xTB
    density_fit: bool = True    # DFT only
    frozen_core: bool = False   # MP2/CCSD/CCSD(T)
    charge: int = 0
    spin: int = 0               # 2S (number of unpaired electrons)

    @property
    def name(self) -> str:
        return self.method if self.basis is None else f"{self.method}/{self.basis}"

    @classmethod
    def parse(cls, text: str, **options) -> "Level":
        text = text.strip().lower()
        if text in XTB:
            return cls(text, None, **options)
        method, sep, basis = text.partition("/")
        if not sep or not method or not basis:
            raise ValueError(f"level of theory {text!r}: expected 'method/basis' (e.g. 'pbe/def2-svp') "
                             f"or one of {XTB}")
        return cls(method, basis, **options)


def compute(numbers, positions, level: Level, forces: bool = True) -> Tuple[float, Optional[np.ndarray]]:
    """Energy (eV) and forces (eV/A, or None) of one structure."""
    if level.method in XTB:
        return _xtb(numbers, positions, level, forces)
    return _pyscf(numbers, positions, level, forces)


def _xtb(numbers, positions, level, forces):
    from tblite.ase import TBLite
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = TBLite(method="GFN2-xTB" if level.method == "gfn2-xtb" else "GFN1-xTB",
                        charge=level.charge, multiplicity=level.spin + 1, verbosity=0)
    energy = atoms.get_potential_energy()
    return energy, (atoms.get_forces() if forces else None)


def _pyscf(numbers, positions, level, forces):
    from pyscf import cc, dft, gto, mp, scf
    mol = gto.M(atom=[(int(z), tuple(p)) for z, p in zip(numbers, positions)], basis=level.basis,
                unit="Angstrom", charge=level.charge, spin=level.spin, verbose=0)
    restricted = level.spin == 0
    if level.method not in CORRELATED:  # DFT
        mf = (dft.RKS if restricted else dft.UKS)(mol)
        mf.xc = level.method
        if level.density_fit:
            mf = mf.density_fit()
    else:
        mf = (scf.RHF if restricted else scf.UHF)(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge ({level.name})")
    frozen = _n_core_orbitals(numbers) if level.frozen_core else None
    post = None
    if level.method == "mp2":
        post = mp.MP2(mf, frozen=frozen).run()
        energy = post.e_tot
    elif level.method in ("ccsd", "ccsd(t)"):
        post = cc.CCSD(mf, frozen=frozen).run()
        if not post.converged:
            raise RuntimeError(f"CCSD did not converge ({level.name})")
        energy = post.e_tot
        if level.method == "ccsd(t)":
            energy += post.ccsd_t()
    else:
        energy = mf.e_tot
    grad = None
    if forces:
        if level.method == "ccsd(t)":
            from pyscf.grad import ccsd_t as ccsd_t_grad
            grad = ccsd_t_grad.Gradients(post).kernel()
        else:
            grad = (post or mf).nuc_grad_method().kernel()
        grad = -np.asarray(grad) * units.Hartree / units.Bohr
    return float(energy) * units.Hartree, grad


def _n_core_orbitals(numbers) -> int:
    core = 0
    for z in numbers:
        core += 0 if z <= 2 else 1 if z <= 10 else 5 if z <= 18 else 9
    return core


# ---- files ---------------------------------------------------------------------------

def _frame_text(numbers, positions, energy, forces, level: Level, source_index: int, seconds: float) -> str:
    from ase.calculators.singlepoint import SinglePointCalculator
    import io
    import ase.io
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.info.update({"level": level.name, "source_index": int(source_index), "wall_s": round(seconds, 2)})
    atoms.calc = SinglePointCalculator(atoms, energy=energy, **({"forces": forces} if forces is not None else {}))
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()


def read_done(path: Path, level: Level) -> List[int]:
    """Source indices already labelled in `path`; a torn last frame (killed mid-write) is cut off."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    done, pos, good_chars = [], 0, 0
    while pos < len(lines):
        try:
            n = int(lines[pos])
        except ValueError:
            break
        if pos + 2 + n > len(lines) or not lines[pos + 1 + n].endswith("\n"):
            break
        header = lines[pos + 1]
        if f'level={level.name}' not in header and f'level="{level.name}"' not in header:
            raise ValueError(f"{path}: holds labels at another level of theory ({header.strip()[:120]}); "
                             f"use another output file")
        done.append(int(header.split("source_index=")[1].split()[0]))
        good_chars += sum(len(l) for l in lines[pos:pos + 2 + n])
        pos += 2 + n
    if good_chars < sum(len(l) for l in lines):
        with open(path, "r+") as f:  # drop the torn frame
            f.truncate(len("".join(lines)[:good_chars].encode()))
    return done


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _worker_init(threads: int):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        from pyscf import lib
        lib.num_threads(threads)
    except ImportError:
        pass


def _task(args):
    k, numbers, positions, level, forces = args
    started = time.perf_counter()
    energy, f = compute(numbers, positions, level, forces)
    return k, numbers, positions, energy, f, time.perf_counter() - started


def label_structures(structures: Sequence[Atoms], out: Path, level: Level, forces: bool = True,
                     workers: int = 1, threads: int = 1, indices: Optional[Sequence[int]] = None,
                     progress: bool = True) -> int:
    """Label `structures` (those in `indices`, default all) into `out`; returns how many were new."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set(read_done(out, level))
    todo = [k for k in (indices if indices is not None else range(len(structures))) if k not in done]
    if not todo:
        return 0
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc=f"{level.name}", unit="struct", disable=not progress, dynamic_ncols=True)
    tasks = [(k, structures[k].numbers, structures[k].positions, level, forces) for k in todo]
    failures = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_task, t) for t in tasks]
        try:
            for fut in as_completed(futures):
                try:
                    k, numbers, positions, energy, f, seconds = fut.result()
                except Exception as exc:  # one bad structure must not lose the others
                    failures.append(str(exc))
                    bar.update(1)
                    continue
                _append(out, _frame_text(numbers, positions, energy, f, level, k, seconds))
                bar.update(1)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            raise
    bar.close()
    if failures:
        raise RuntimeError(f"{len(failures)} structure(s) failed, the rest are in {out}: {failures[:3]}")
    _sort_by_source(out, level)
    return len(todo)


def _sort_by_source(path: Path, level: Level) -> None:
    """Rewrite a complete label file in input order (parallel workers finish out of order)."""
    lines = path.read_text().splitlines(keepends=True)
    frames, pos = [], 0
    while pos < len(lines):
        n = int(lines[pos])
        frames.append((int(lines[pos + 1].split("source_index=")[1].split()[0]), "".join(lines[pos:pos + 2 + n])))
        pos += 2 + n
    frames.sort(key=lambda f: f[0])
    tmp = path.with_name(f".{path.name}.sorting")
    tmp.write_text("".join(text for _, text in frames))
    os.replace(tmp, path)
