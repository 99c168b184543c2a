"""Reference labels from quantum chemistry: GFN2-xTB (tblite), HF/DFT/MP2/CCSD/CCSD(T) (PySCF).

A level of theory is written "method/basis" ("pbe/def2-svp", "ccsd(t)/cc-pvdz", "hf/sto-3g",
"mp2/cc-pvdz") or "gfn2-xtb" / "gfn1-xtb". Any method that is not HF, MP2, CCSD or CCSD(T)
must be a DFT functional PySCF knows. Defaults: density fitting for DFT (`density_fit`),
all electrons correlated (`frozen_core=False`), closed-shell neutral molecules. `check_level`
refuses a level, option or charge/spin that cannot work before any structure is computed.

`label_structures` runs structures in parallel processes and appends every finished structure
at once to an extxyz file (energy in eV, forces in eV/A, `level=` and `source_index=` in the
comment line, and `charge=`, `spin=`, `density_fit=`, `frozen_core=` where not the default).
A re-run skips the structures already in the file, found by their geometry (`geometry_key`),
so an interrupted run loses at most the structures in flight, and a file holding another
level of theory is refused. The workers die with gmnn-label (kill -9 included); SIGTERM and
Ctrl-C stop them and keep every finished structure. Requires `pip install gmnn[qc]`.
"""
import ctypes
import hashlib
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms, units

CORRELATED = ("hf", "mp2", "ccsd", "ccsd(t)")
XTB = ("gfn2-xtb", "gfn1-xtb")
XTB_MAX_Z = 86  # GFN1/GFN2 parametrise H-Rn


class LabelError(ValueError):
    """A level of theory, option, input or output file that cannot work; the message is one line."""


class Interrupted(KeyboardInterrupt):
    """Stopped by SIGTERM or Ctrl-C: the workers are gone, every finished structure is in the file."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status  # 143 for SIGTERM, 130 for Ctrl-C (128 + signal number)


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

    @property
    def is_dft(self) -> bool:
        return self.method not in CORRELATED and self.method not in XTB

    def options(self) -> dict:
        """The settings besides the name that change the labels, where not the default; written
        into every frame, and a frame without one of them has the default."""
        options = {}
        if self.charge:
            options["charge"] = self.charge
        if self.spin:
            options["spin"] = self.spin
        if self.is_dft and not self.density_fit:
            options["density_fit"] = False
        if self.method in CORRELATED[1:] and self.frozen_core:
            options["frozen_core"] = True
        return options

    def describe(self) -> str:
        return _describe(self.name, self.options())

    @classmethod
    def parse(cls, text: str, **options) -> "Level":
        text = text.strip().lower()
        if text in XTB:
            return cls(text, None, **options)
        method, sep, basis = text.partition("/")
        if method in XTB:
            raise LabelError(f"level of theory {text!r}: xTB brings its own basis, write {method!r} alone")
        if not sep or not method.strip() or not basis.strip():
            raise LabelError(f"level of theory {text!r}: expected 'method/basis' (e.g. 'pbe/def2-svp') "
                             f"or one of {', '.join(XTB)}")
        return cls(method.strip(), basis.strip(), **options)


def _describe(name: str, options: dict) -> str:
    """"pbe/def2-svp charge 1 spin 1 without density fitting": a level as messages name it."""
    words = [name]
    for key, value in options.items():
        if key == "density_fit":
            words.append("with density fitting" if value else "without density fitting")
        elif key == "frozen_core":
            words.append("frozen core" if value else "all electrons")
        else:
            words.append(f"{key} {value}")
    return " ".join(words)


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


def _molecule(numbers, positions, level):
    from pyscf import gto
    return gto.M(atom=[(int(z), tuple(p)) for z, p in zip(numbers, positions)], basis=level.basis,
                 unit="Angstrom", charge=level.charge, spin=level.spin, verbose=0)


def _mean_field(mol, level):
    from pyscf import dft, scf
    restricted = level.spin == 0
    if level.is_dft:
        mf = (dft.RKS if restricted else dft.UKS)(mol)
        mf.xc = level.method
        return mf.density_fit() if level.density_fit else mf
    return (scf.RHF if restricted else scf.UHF)(mol)


def _pyscf(numbers, positions, level, forces):
    from pyscf import cc, mp
    mf = _mean_field(_molecule(numbers, positions, level), level)
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


# ---- checks before any work ----------------------------------------------------------------

def check_level(level: Level, structures: Sequence[Atoms], forces: bool = True,
                indices: Optional[Sequence[int]] = None) -> None:
    """Raise LabelError if `level` cannot label `structures` (those in `indices`, default all): an
    unknown method, functional or basis, a basis without some element, options that do not apply,
    a charge/spin that does not fit the electrons of the first structure, periodic structures.
    Costs milliseconds, computes nothing."""
    indices = list(range(len(structures))) if indices is None else list(indices)
    if level.spin < 0:
        raise LabelError(f"--spin {level.spin}: the number of unpaired electrons cannot be negative")
    if not level.density_fit and not level.is_dft:
        raise LabelError(f"--no-density-fit applies to DFT only, not to {level.name}")
    if level.frozen_core and level.method not in CORRELATED[1:]:
        raise LabelError(f"--frozen-core applies to MP2, CCSD and CCSD(T) only, not to {level.name}")
    for k in indices:
        if np.any(structures[k].pbc):
            raise LabelError(f"structure {k} is periodic (pbc={structures[k].pbc.tolist()}); gmnn-label computes "
                             f"isolated molecules: set pbc to False if the cell is only a box around a molecule")
    first = structures[indices[0]]
    electrons = int(np.sum(first.numbers)) - level.charge
    if electrons < 0 or level.spin > electrons or (electrons - level.spin) % 2:
        raise LabelError(f"charge {level.charge} and spin {level.spin} (unpaired electrons) do not fit structure "
                         f"{indices[0]} ({first.get_chemical_formula()}, {electrons} electrons): the unpaired "
                         f"electrons must be at most the electrons and of the same parity")
    elements = sorted({int(z) for k in indices for z in structures[k].numbers})
    if level.method in XTB:
        _check_xtb(level, elements)
    else:
        _check_pyscf(level, first, elements, forces)


def _check_xtb(level, elements):
    try:
        import tblite.ase  # noqa: F401
    except ImportError:
        raise LabelError(f"{level.name} needs tblite: pip install gmnn[qc]") from None
    from ase.data import chemical_symbols
    beyond = [chemical_symbols[z] for z in elements if z > XTB_MAX_Z]
    if beyond:
        raise LabelError(f"{level.name} has no parameters for {', '.join(beyond)} (H to Rn only)")


def _check_pyscf(level, first, elements, forces):
    try:
        from pyscf import gto
    except ImportError:
        raise LabelError(f"{level.name} needs PySCF: pip install gmnn[qc]") from None
    if level.method == "ccsd(t)" and forces and level.spin:
        raise LabelError(f"CCSD(T) forces need a closed shell (--spin 0): PySCF's open-shell CCSD(T) gradient "
                         f"differs from finite differences (1% for OH/STO-3G); use --no-forces, or ccsd")
    if level.is_dft:
        _check_functional(level)
    from ase.data import chemical_symbols
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PySCF's hint to install basis-set-exchange
        for z in elements:
            try:
                gto.basis.load(level.basis, chemical_symbols[z])
            except Exception as exc:  # BasisNotFoundError, or a parse error of a basis file
                if "Unknown basis" in str(exc):
                    raise LabelError(f"level {level.name}: unknown basis {level.basis!r}") from None
                raise LabelError(f"level {level.name}: basis {level.basis!r} has no functions for "
                                 f"{chemical_symbols[z]}") from None
    if level.is_dft:
        try:  # a dispersion correction (-d3bj, -d4) is set up with the molecule
            mf = _mean_field(_molecule(first.numbers, first.positions, level), level)
            getattr(mf, "get_dispersion", lambda: None)()
        except Exception as exc:
            raise LabelError(f"level {level.name}: dispersion correction: {_one_line(exc)}") from None


def _check_functional(level):
    from pyscf.dft import libxc
    xc = level.method
    try:
        from pyscf.scf.dispersion import parse_dft
    except ImportError:
        parse_dft = None
    try:
        if parse_dft is not None:
            xc = parse_dft(xc)[0]  # strips -d3bj/-d4; refuses the '-3c' composites PySCF lacks
        libxc.parse_xc(xc)
    except Exception as exc:  # KeyError from libxc, NotImplementedError from parse_dft
        raise LabelError(f"unknown method {level.method!r} in level {level.name}: not one of "
                         f"{', '.join(CORRELATED + XTB)} and not a DFT functional PySCF can use "
                         f"({_one_line(exc)})") from None


def _one_line(exc) -> str:
    return " ".join(str(exc).strip("'\"").split())


def check_run(structures: Sequence[Atoms], indices: Sequence[int], workers: int, threads: int) -> None:
    if workers < 1:
        raise LabelError(f"--workers {workers}: need at least 1 process")
    if threads < 1:
        raise LabelError(f"--threads {threads}: need at least 1 thread per process")
    if not len(indices):
        raise LabelError("no structures to label")
    bad = [k for k in indices if not 0 <= k < len(structures)]
    if bad:
        raise LabelError(f"structure index {bad[0]} out of range (0..{len(structures) - 1})")


# ---- label files -----------------------------------------------------------------------------

def geometry_key(numbers, positions) -> str:
    """Identity of a structure for resuming: its atomic numbers and positions as the label file
    stores them (ASE writes 8 decimals), rounded to 1e-5 A. The positions read back from a label
    file give the key of the structure that was labelled, exactly."""
    stored = np.char.mod("%.8f", np.asarray(positions, dtype=np.float64).ravel()).astype(np.float64)
    rounded = np.round(stored, 5) + 0.0  # + 0.0: -0.0 and 0.0 are one position
    digest = hashlib.sha1(np.asarray(numbers, dtype=np.int64).tobytes())
    digest.update(rounded.tobytes())
    return digest.hexdigest()


class Finished(NamedTuple):
    source_index: int
    key: str


class _Frame(NamedTuple):
    text: str       # count line, comment line, atom lines
    info: dict      # the comment line's key=value pairs


def read_finished(path: Path, level: Level) -> List[Finished]:
    """The structures already labelled in `path` (any version of this module wrote it). A frame torn
    by a kill in mid-write is cut off; anything else that is not a frame at `level` is an error,
    and the file is then left as it is."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a gmnn-label file (not text); use another output file") from None
    frames, end = _frames(path, text)
    for k, frame in enumerate(frames):
        theirs = _frame_level(frame.info)
        if theirs != (level.name, level.options()):
            raise LabelError(f"{path}: holds labels at level {_describe(*theirs)} (frame {k}); this run: "
                             f"{level.describe()}; use another output file")
    finished = [Finished(int(frame.info["source_index"]), _frame_key(path, k, frame)) for k, frame in enumerate(frames)]
    if end < len(text):
        with open(path, "r+b") as f:  # drop the torn frame
            f.truncate(len(text[:end].encode()))
    return finished


def _frames(path: Path, text: str) -> Tuple[List[_Frame], int]:
    """The complete frames of a label file and where the last one ends; what follows must be blank
    or a frame torn in mid-write (a count line, maybe the comment line with level=, some atoms)."""
    lines = text.splitlines(keepends=True)
    frames, pos, end = [], 0, 0
    while pos < len(lines):
        count = lines[pos].strip()
        n = int(count) if count.isdigit() else None
        stop = pos + 2 + (n or 0)
        if n is None or stop > len(lines) or not lines[stop - 1].endswith("\n"):
            _check_torn(path, lines, pos)
            break
        chunk = "".join(lines[pos:stop])
        frames.append(_Frame(chunk, _frame_info(path, lines[pos + 1], pos + 2)))
        end += len(chunk)
        pos = stop
    return frames, end


def _frame_info(path: Path, header: str, line: int) -> dict:
    from ase.io.extxyz import key_val_str_to_dict
    try:
        info = key_val_str_to_dict(header.strip())
        int(info["source_index"]), str(info["level"])
    except Exception:  # no such keys, or a comment line ASE cannot parse
        raise LabelError(f"{path}: line {line} is not a gmnn-label frame (no level= and source_index=); "
                         f"use another output file") from None
    return info


def _check_torn(path: Path, lines: List[str], pos: int) -> None:
    """Accept the file from line `pos` on as a frame torn in mid-write (to be cut off), or refuse it."""
    if not "".join(lines[pos:]).strip():
        return  # blank lines
    header = lines[pos + 1] if pos + 1 < len(lines) else ""
    torn = lines[pos].strip().isdigit() and (not header.endswith("\n") or "level=" in header)
    if not torn:
        raise LabelError(f"{path}: line {pos + 1} is not a gmnn-label frame ({lines[pos].strip()[:40]!r}); "
                         f"use another output file")


def _frame_level(info: dict) -> Tuple[str, dict]:
    options = {k: info[k] for k in ("charge", "spin", "density_fit", "frozen_core") if k in info}
    for k in ("charge", "spin"):
        if k in options:
            options[k] = int(options[k])
    for k in ("density_fit", "frozen_core"):
        if k in options:
            options[k] = bool(options[k])
    return str(info["level"]), options


def _frame_key(path: Path, k: int, frame: _Frame) -> str:
    from ase.data import atomic_numbers
    properties = str(frame.info.get("Properties", "species:S:1:pos:R:3")).split(":")
    columns, column = {}, 0
    for name, _, width in zip(properties[0::3], properties[1::3], properties[2::3]):
        columns[name] = column
        column += int(width)
    try:
        rows = [line.split() for line in frame.text.splitlines()[2:]]
        numbers = [atomic_numbers[row[columns["species"]]] for row in rows]
        positions = [[float(x) for x in row[columns["pos"]:columns["pos"] + 3]] for row in rows]
    except (KeyError, ValueError, IndexError):
        raise LabelError(f"{path}: frame {k} has unreadable atom lines; use another output file") from None
    return geometry_key(numbers, positions)


def _unfinished(structures: Sequence[Atoms], indices: Sequence[int], finished: Sequence[Finished]) -> List[int]:
    """Indices whose geometry is not in the file yet. A frame counts for one structure: first for the
    one with its source index, then for another with its geometry (the same input in another
    order, or another file), so a geometry repeated in the input is labelled once per index."""
    keys = {k: geometry_key(structures[k].numbers, structures[k].positions) for k in indices}
    by_index = Counter(finished)
    by_key = Counter(f.key for f in finished)
    rest = []
    for k in indices:
        if by_index[Finished(k, keys[k])]:
            by_index[Finished(k, keys[k])] -= 1
            by_key[keys[k]] -= 1
        else:
            rest.append(k)
    todo = []
    for k in rest:
        if by_key[keys[k]] > 0:
            by_key[keys[k]] -= 1
        else:
            todo.append(k)
    return todo


def _frame_text(numbers, positions, energy, forces, level: Level, source_index: int, seconds: float) -> str:
    from ase.calculators.singlepoint import SinglePointCalculator
    import io
    import ase.io
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.info.update({"level": level.name, **level.options(), "source_index": int(source_index),
                       "wall_s": round(seconds, 2)})
    atoms.calc = SinglePointCalculator(atoms, energy=energy, **({"forces": forces} if forces is not None else {}))
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _sort_by_source(path: Path) -> None:
    """Rewrite a label file in input order (parallel workers finish out of order)."""
    text = path.read_bytes().decode()
    frames, end = _frames(path, text)
    ordered = sorted(frames, key=lambda f: int(f.info["source_index"]))
    if ordered == frames:
        return
    tmp = path.with_name(f".{path.name}.sorting")
    tmp.write_bytes(("".join(f.text for f in ordered) + text[end:]).encode())
    os.replace(tmp, path)


# ---- workers ---------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int, prctl: bool = True) -> None:
    """Make this worker end when gmnn-label ends, also by kill -9: the kernel sends SIGKILL when the
    parent dies (Linux prctl); elsewhere a thread watches for the parent to change."""
    if not (prctl and _set_parent_death_signal(signal.SIGKILL)):
        threading.Thread(target=_watch_parent, args=(parent,), name="gmnn-label-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was asked
        os._exit(1)


def _set_parent_death_signal(sig) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _worker_init(threads: int, parent: int):
    _die_with_parent(parent)
    # gmnn-label decides when workers stop: Ctrl-C in the terminal and a SIGTERM to the process
    # group reach the workers too, and must not kill them in the middle of the parent's clean-up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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


class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.name, self.status = ("Ctrl-C", 130) if signum == signal.SIGINT else ("SIGTERM", 143)


class _StopSignals:
    """While active (main thread only): SIGTERM and Ctrl-C raise _Stopped, but never while a frame
    is being written (then they wait until it is on disk) nor while the workers are being stopped."""

    def __init__(self):
        self.writing, self.stopping, self.pending, self.previous = False, False, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.stopping:
            return
        if self.writing:
            self.pending = signum
        else:
            raise _Stopped(signum)

    @contextmanager
    def held(self):
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
        if self.pending is not None:
            raise _Stopped(self.pending)


def _mp_context():
    """Workers are fresh interpreters (spawn): direct children of gmnn-label, which is what
    _die_with_parent watches (Python 3.14's forkserver default would put a server in between),
    and free of the parent's threads and OpenMP state (a forked child of a process that had run
    tblite hangs in its first xTB calculation)."""
    import multiprocessing
    return multiprocessing.get_context("spawn")


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before Python 3.14
    for p in processes:
        if p.is_alive():
            p.kill()
    for p in processes:
        p.join()
    pool.shutdown(wait=True, cancel_futures=True)


# ---- labelling -------------------------------------------------------------------------------

def label_structures(structures: Sequence[Atoms], out: Path, level: Level, forces: bool = True,
                     workers: int = 1, threads: int = 1, indices: Optional[Sequence[int]] = None,
                     progress: bool = True) -> int:
    """Label `structures` (those in `indices`, default all) into `out`; returns how many were new.

    Raises LabelError before any work for a level, option or file that cannot work, and after the
    run if structures failed (the others are in the file); Interrupted on SIGTERM or Ctrl-C."""
    out = Path(out)
    indices = list(range(len(structures))) if indices is None else [int(k) for k in indices]
    check_run(structures, indices, workers, threads)
    check_level(level, structures, forces, indices)
    finished = read_finished(out, level)
    todo = _unfinished(structures, indices, finished)
    if not todo:
        _sort_by_source(out)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    open(out, "a").close()  # an unwritable output fails here, before any work
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc=f"{level.name}", unit="struct", disable=not progress, dynamic_ncols=True)
    tasks = [(k, structures[k].numbers, structures[k].positions, level, forces) for k in todo]
    failures, saved = [], 0

    def where():
        total = len(indices) - len(todo) + saved
        return f"{total} of {len(indices)} structure(s) are in {out} ({saved} from this run)"

    with _StopSignals() as stop:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_worker_init,
                                   initargs=(threads, os.getpid()))
        try:
            futures = {pool.submit(_task, t): t[0] for t in tasks}
            for fut in as_completed(futures):
                try:
                    k, numbers, positions, energy, f, seconds = fut.result()
                except BrokenProcessPool:
                    raise LabelError(f"a worker process died (out of memory? killed?); {where()}: re-run the "
                                     f"same command to continue") from None
                except Exception as exc:  # one bad structure must not lose the others
                    failures.append((futures[fut], exc))
                    bar.update(1)
                    continue
                text = _frame_text(numbers, positions, energy, f, level, k, seconds)
                with stop.held():
                    _append(out, text)
                    saved += 1
                bar.update(1)
        except (_Stopped, KeyboardInterrupt) as exc:
            stop.stopping = True  # a second Ctrl-C must not interrupt the clean-up
            _kill_workers(pool)
            bar.close()
            name, status = (exc.name, exc.status) if isinstance(exc, _Stopped) else ("Ctrl-C", 130)
            raise Interrupted(f"stopped by {name}: {where()}; re-run the same command to continue", status) from None
        except BaseException:
            stop.stopping = True
            _kill_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
    _sort_by_source(out)
    if failures:
        failures.sort(key=lambda f: f[0])
        shown = "; ".join(f"structure {k}: {_one_line(exc) or type(exc).__name__}" for k, exc in failures[:3])
        raise LabelError(f"{len(failures)} of {len(indices)} structure(s) failed ({shown}); {where()}")
    return len(todo)
