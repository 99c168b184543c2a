"""gmnn-label: reference labels from quantum chemistry (levels.py), computed in parallel
processes and appended to a label file (label_file.py) as each structure finishes.

`label_structures` skips the structures already in the file, so an interrupted run loses at
most the structures in flight. The workers die with gmnn-label (kill -9 included); SIGTERM and
Ctrl-C stop them and keep every finished structure. Requires `pip install gmnn[qc]`.
"""
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

from ase import Atoms

from .label_file import append_frame, frame_text, read_finished, sort_by_source, unfinished
from .levels import LabelError, Level, check_level, compute, one_line


class Interrupted(KeyboardInterrupt):
    """Stopped by SIGTERM or Ctrl-C: the workers are gone, every finished structure is in the file."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status  # 143 for SIGTERM, 130 for Ctrl-C (128 + signal number)


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
    todo = unfinished(structures, indices, finished)
    if not todo:
        sort_by_source(out)
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
                text = frame_text(numbers, positions, energy, f, level, k, seconds, getattr(structures[k], "info", None))
                with stop.held():
                    append_frame(out, text)
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
    sort_by_source(out)
    if failures:
        failures.sort(key=lambda f: f[0])
        shown = "; ".join(f"structure {k}: {one_line(exc) or type(exc).__name__}" for k, exc in failures[:3])
        raise LabelError(f"{len(failures)} of {len(indices)} structure(s) failed ({shown}); {where()}")
    return len(todo)
