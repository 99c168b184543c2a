"""The run directory belongs to one run at a time.

`claimed(output_dir, resume, overwrite)` wraps a run of gmnn-train / gmnn-finetune:

- it locks `<output_dir>/.gmnn.lock` (which says "PID host"), so a second run into the same
  directory stops with an error naming the first one's PID instead of interleaving metrics
  rows and replacing its checkpoints; a lock whose holder died (kill -9) is taken over;
- it refuses a directory that already holds a run unless the run resumes it (`--resume`) or
  replaces it (`--overwrite`, which deletes the old run's files, so no stale row survives);
- it removes the temporary checkpoints a killed run left behind (only with the lock held);
- the lock is released however the run ends: return, exception, SIGTERM (exit 143) or
  Ctrl-C (exit 130).

Under torchrun only rank 0 writes files, so only rank 0 claims the directory; the other ranks
learn whether it could.
"""
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from . import distributed
from .checkpoint import load_checkpoint, temporaries

log = logging.getLogger(__name__)

LOCK_NAME = ".gmnn.lock"
RUN_FILES = ("best.ckpt", "last.ckpt", "metrics.csv", "final_metrics.json", "cross_validation.json")  # a directory with any holds a run
OTHER_FILES = ("config.json",)  # rewritten by every run; removed by --overwrite too
RUN_DIRECTORIES = ("folds",)  # the cross-validated fine-tune's fold models; removed by --overwrite too
STALE_FILES = ("metrics.tmp", ".write_test")  # temporaries (training.py, check_output_dir) a kill -9 may leave
# errors of flock on file systems without it (Lustre without -o flock, some FUSE mounts)
NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


class RunDirError(OSError):
    """The run directory is busy or holds another run (an OSError, so the command-line tools
    report it as one line, like every file-system problem)."""


@contextmanager
def claimed(output_dir, resume: bool = False, overwrite: bool = False):
    """Hold `output_dir` for one run (see the module's docstring)."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: continue the run, or replace it")
    out = Path(output_dir)
    lock, error = None, None
    if distributed.is_main():
        try:
            lock = _RunLock(out)
            _prepare(out, resume, overwrite, locked=lock.fd is not None)
        except Exception as exc:
            error = exc
            if lock is not None:
                lock.release()
    if not distributed.all_ranks_true(error is None):
        raise error or RunDirError(f"{out}: rank 0 could not start the run (see its error)")

    def stop(signum, frame=None):  # SIGTERM or Ctrl-C outside the training loop (which says the same)
        if distributed.is_main():
            print(interrupted_message(out, signum))
        raise SystemExit(128 + signum)
    previous = _on_sigterm(stop) if threading.current_thread() is threading.main_thread() else None
    try:
        yield out
    except KeyboardInterrupt:
        stop(signal.SIGINT)
    finally:
        if previous is not None:
            _on_sigterm(previous)
        if lock is not None:
            lock.release()


def _prepare(out: Path, resume: bool, overwrite: bool, locked: bool) -> None:
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not (resume or overwrite):
        raise RunDirError(f"{out} already holds a run ({', '.join(found)}): continue it with --resume, or "
                          f"replace it with --overwrite (deletes {', '.join(found)}), or choose another output_dir")
    if overwrite and found:
        for name in RUN_FILES + OTHER_FILES:
            (out / name).unlink(missing_ok=True)
        for name in RUN_DIRECTORIES:
            shutil.rmtree(out / name, ignore_errors=True)
        log.info("--overwrite: removed the previous run's %s from %s", ", ".join(found), out)
    if locked:  # without the lock, a temporary may belong to a run that is still writing it
        stale = temporaries(out) + [out / name for name in STALE_FILES if (out / name).exists()]
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("removed %s, left by a run that was killed while writing", ", ".join(p.name for p in stale))


class _RunLock:
    """An exclusive fcntl.flock on <out>/.gmnn.lock, which holds "PID host" for the messages.

    Why flock and not O_CREAT|O_EXCL: the kernel drops a flock when its holder dies, however it
    dies (kill -9, OOM killer, node crash on NFSv4 after the lease), so whether a lock is stale
    needs no guessing: a lock file we can flock belongs to nobody. With O_EXCL, staleness would
    have to be guessed from the PID, which is reused and means nothing on another host of a
    shared file system, and two runs taking over the same stale file would race. Where the file
    system has no flock, the run goes ahead unlocked, with a warning.
    """

    def __init__(self, out: Path):
        self.created = not out.exists()  # then an unused directory is removed again
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / LOCK_NAME
        self.fd: Optional[int] = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirError(self._busy_message()) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in NO_FLOCK:
                    raise
                log.warning("%s: the file system cannot lock files (%s); nothing stops a second run into %s "
                            "from mixing its files with this one's", self.path, exc.strerror, out)
                return
            # the previous holder may have removed the file between our open and flock
            if _same_file(self.path, fd):
                break
            os.close(fd)
        self.fd = fd
        previous = os.read(fd, 256).decode(errors="replace").split()
        if previous:
            log.warning("%s: taking over the lock of PID %s on %s, which ended without releasing it (killed?)",
                        self.path, previous[0], previous[1] if len(previous) > 1 else "an unknown host")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)

    def _busy_message(self) -> str:
        holder = []
        for _ in range(20):  # the holder writes its PID just after taking the lock
            holder = self.path.read_text(errors="replace").split() if self.path.exists() else []
            if holder:
                break
            time.sleep(0.05)
        pid = holder[0] if holder else "unknown"
        host = f" on {holder[1]}" if len(holder) > 1 and holder[1] != socket.gethostname() else ""
        return (f"{self.path.parent} is in use by another gmnn run (PID {pid}{host}, lock {self.path}): "
                "wait for it to end or stop it, or choose another output_dir")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody takes the old file
        finally:
            os.close(self.fd)
            self.fd = None
        if self.created:
            try:
                self.path.parent.rmdir()  # only if empty: the run failed before writing anything
            except OSError:
                pass


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _on_sigterm(handler):
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)
    return previous


def check_output_dir(path: Path, needed_bytes: int = 0) -> None:
    """Fail before training, not after hours, if results cannot be written: the directory must
    be writable and hold `needed_bytes` (the checkpoints a run keeps, plus a temporary copy)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise OSError(f"output directory {path} is not writable: {exc}") from exc
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise OSError(f"output directory {path} has {free / 2**20:.1f} MiB free, but training needs about "
                      f"{needed_bytes / 2**20:.1f} MiB for its checkpoints (best, last and a temporary copy); "
                      "free some space or choose another output_dir")


def checkpoint_bytes(model) -> int:
    """Size of one checkpoint: parameters plus the optimizer's two moment buffers, with slack."""
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(3.2 * parameter_bytes) + 2**20


def stored_epoch(checkpoint: Path) -> Optional[int]:
    """The epoch a checkpoint holds; None if there is none (or it cannot be read)."""
    if not checkpoint.exists():
        return None
    try:
        return int(load_checkpoint(checkpoint)["epoch"])
    except Exception:
        return None


def interrupted_message(out: Path, signum) -> str:
    """What a run stopped by a signal tells the user: the epoch last.ckpt really holds."""
    name = signal.Signals(signum).name
    command = Path(sys.argv[0]).name if Path(sys.argv[0]).name.startswith("gmnn-") else "gmnn-train"
    epoch = stored_epoch(Path(out) / "last.ckpt")
    if command == "gmnn-active":  # its training stage resumes, or starts again, with the loop
        held = "no epoch was saved yet" if epoch is None else f"{Path(out) / 'last.ckpt'} holds epoch {epoch}"
        return f"stopped by {name} while training ({held}). Continue with: gmnn-active <config> --resume"
    if epoch is None:
        return (f"stopped by {name}; no epoch was saved to {Path(out) / 'last.ckpt'}, so there is nothing to "
                f"resume: start again with: {command} <config> --overwrite")
    return f"stopped by {name}; {Path(out) / 'last.ckpt'} holds epoch {epoch}. Continue with: {command} <config> --resume"


@contextmanager
def naming(path):
    """An OSError while writing `path` names it (one from write(), e.g. EFBIG, EIO, does not)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        error = OSError(f"{path}: cannot write ({exc.strerror or exc})")
        error.errno = exc.errno
        raise error from exc
