"""The label file gmnn-label writes: extxyz, one frame per finished structure (energy in eV,
forces in eV/A, `level=` and `source_index=` in the comment line, and `charge=`, `spin=`,
`density_fit=`, `frozen_core=` where not the default, next to the input's own metadata), appended at once and fsynced. A re-run
finds the structures already there by their geometry (`geometry_key`), cuts off a frame torn by
a kill in mid-write, and refuses a file holding another level of theory."""
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from .levels import LabelError, Level, describe


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
            raise LabelError(f"{path}: holds labels at level {describe(*theirs)} (frame {k}); this run: "
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


def unfinished(structures: Sequence[Atoms], indices: Sequence[int], finished: Sequence[Finished]) -> List[int]:
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


# input metadata that a label file does not carry over: labels (the new ones replace them) and
# what label_file itself writes
NOT_CARRIED = {"energy", "free_energy", "stress", "virial", "dipole", "charges", "magmom", "level", "source_index",
               "wall_s", "charge", "spin", "density_fit", "frozen_core"}


def frame_text(numbers, positions, energy, forces, level: Level, source_index: int, seconds: float,
               info: Optional[dict] = None) -> str:
    """One label-file frame; `info`: the input structure's metadata (e.g. config_type, kind,
    temperature), kept in the comment line except labels and label_file's own keys."""
    from ase.calculators.singlepoint import SinglePointCalculator
    import io
    import ase.io
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.info.update({k: v for k, v in (info or {}).items() if k not in NOT_CARRIED})
    atoms.info.update({"level": level.name, **level.options(), "source_index": int(source_index),
                       "wall_s": round(seconds, 2)})
    atoms.calc = SinglePointCalculator(atoms, energy=energy, **({"forces": forces} if forces is not None else {}))
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue()


def append_frame(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def sort_by_source(path: Path) -> None:
    """Rewrite a label file in input order (parallel workers finish out of order)."""
    text = path.read_bytes().decode()
    frames, end = _frames(path, text)
    ordered = sorted(frames, key=lambda f: int(f.info["source_index"]))
    if ordered == frames:
        return
    tmp = path.with_name(f".{path.name}.sorting")
    tmp.write_bytes(("".join(f.text for f in ordered) + text[end:]).encode())
    os.replace(tmp, path)
