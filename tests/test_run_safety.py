"""A run directory and its files are safe from the user's slips and from crashes: a second run
into a finished or busy directory, kill -9 and signals, flipped bytes in checkpoints, a failing
disk, and an exported model given where a training checkpoint is needed (issue 12)."""
import csv
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from gmnn.checkpoint import CheckpointError, load_checkpoint, load_model
from gmnn.cli import eval_main, export_main, finetune_main, train_main
from gmnn_testing import ETHANOL

BIN = Path(sys.executable).parent
LOCK = ".gmnn.lock"


def write_config(path, output_dir, epochs, hidden=(8, 8), cutoff=None, finetune=False):
    """A tiny model on rMD17 ethanol frames 0-15 (validation 90-93): an epoch takes ~0.1 s."""
    model = "" if finetune else (f"model:\n  hidden: {list(hidden)}\n  dtype: float32\n"
                                 + (f"  cutoff: {cutoff}\n" if cutoff else ""))
    path.write_text(f"""output_dir: {output_dir}
data:
  train_file: {ETHANOL}
  train_index: "0:16"
  valid_file: {ETHANOL}
  valid_index: "90:94"
  energy_unit: kcal/mol
{model}training:
  epochs: {epochs}
  batch_size: 8
  threads: 1
""" + ("finetune:\n  layer_lr_factor: 2.6\n" if finetune else ""))
    return path


def one_error_line(capsys) -> str:
    """What the user sees on stderr: exactly one line `error: ...`, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def metric_epochs(run_dir) -> list:
    with open(Path(run_dir) / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run (base/run) and the model exported from it (base/model.pt)."""
    base = tmp_path_factory.mktemp("base")
    config = write_config(base / "train.yaml", base / "run", epochs=2)
    assert train_main([str(config), "--no-progress"]) == 0
    assert export_main([str(base / "run" / "best.ckpt"), "-o", str(base / "model.pt")]) == 0
    return base


@pytest.fixture
def run_copy(tmp_path, finished, monkeypatch):
    """A private copy of the finished run in tmp_path/run, with the config in tmp_path."""
    shutil.copytree(finished / "run", tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "run"


# ---- 1. a second run into a finished run directory ------------------------------------------

def test_rerun_into_a_finished_run_directory_is_refused(run_copy, capsys):
    config = write_config(run_copy.parent / "train.yaml", run_copy, epochs=2)
    before = {name: (run_copy / name).read_bytes() for name in ("best.ckpt", "last.ckpt", "metrics.csv")}
    assert train_main([str(config), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert str(run_copy) in line and "--resume" in line and "--overwrite" in line
    for name, data in before.items():
        assert (run_copy / name).read_bytes() == data, f"{name} changed by a refused run"
    assert not (run_copy / LOCK).exists()


def test_overwrite_replaces_the_old_run_without_stale_rows(run_copy):
    stale = run_copy / ".last.ckpt.ab12cd34.tmp"
    stale.write_bytes(b"half a checkpoint")
    config = write_config(run_copy.parent / "train.yaml", run_copy, epochs=1)
    assert train_main([str(config), "--overwrite", "--no-progress"]) == 0
    assert metric_epochs(run_copy) == [0, 1]  # the old run had epochs 0, 1 and 2
    assert load_checkpoint(run_copy / "last.ckpt")["epoch"] == 1
    assert json.loads((run_copy / "final_metrics.json").read_text())["best_epoch"] in (0, 1)
    assert not stale.exists() and not (run_copy / LOCK).exists()


def test_finetune_refuses_a_finished_run_directory_unless_overwrite(run_copy, finished, capsys):
    config = write_config(run_copy.parent / "ft.yaml", run_copy, epochs=1, finetune=True)
    args = [str(config), "--from", str(finished / "run" / "best.ckpt"), "--no-progress"]
    assert finetune_main(args) == 2
    line = one_error_line(capsys)
    assert str(run_copy) in line and "--resume" in line and "--overwrite" in line
    assert finetune_main(args + ["--overwrite"]) == 0
    assert metric_epochs(run_copy) == [0, 1]


# ---- 2, 6 and 7. the lock, signals, kill -9, and the epoch the message names -----------------

SLOW_DISK = """
import os, sys, time, torch
real_save = torch.save
def save(obj, f, *args, **kwargs):  # a checkpoint write that takes minutes, half-way done
    real_save(obj, f, *args, **kwargs)
    if isinstance(obj, dict) and obj.get("epoch") == int(os.environ["HANG_AT_EPOCH"]):
        f.flush()
        open("writing", "w").close()
        time.sleep(300)
torch.save = save
"""
TRAIN = SLOW_DISK + "from gmnn.cli import train_main\nsys.exit(train_main(sys.argv[1:]))\n"
HOLD_AND_SAVE = SLOW_DISK + """from gmnn.checkpoint import save_checkpoint
from gmnn.rundir import claimed
with claimed(sys.argv[1], resume=True):
    save_checkpoint(os.path.join(sys.argv[1], "last.ckpt"), {"epoch": 3})
"""


def _start(script, *args, cwd, hang_at_epoch):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HANG_AT_EPOCH": str(hang_at_epoch)}
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (Path(cwd) / "writing").exists():  # then it holds the lock and is writing a checkpoint
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended early ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return proc


def test_second_run_into_a_busy_directory_fails_naming_the_pid(tmp_path):
    """The first run is writing epoch 2's checkpoint (slowly) when a second gmnn-train starts
    into the same directory; then SIGTERM stops the first: exit 143, and the message names
    epoch 1, which last.ckpt holds, not epoch 2, which the run had reached."""
    run = tmp_path / "run"
    first = _start(TRAIN, write_config(tmp_path / "train.yaml", run, epochs=3), "--no-progress", cwd=tmp_path,
                   hang_at_epoch=2)
    try:
        assert (run / LOCK).read_text().split()[0] == str(first.pid)
        writing = list(run.glob(".*.ckpt.*.tmp"))
        assert writing
        quick = write_config(tmp_path / "quick.yaml", run, epochs=1)
        second = subprocess.run([str(BIN / "gmnn-train"), str(quick), "--no-progress"], cwd=tmp_path,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"PID {first.pid}" in lines[0], second.stderr
        assert str(run) in lines[0]
        assert first.poll() is None, "the first run must carry on"
        assert all(p.exists() for p in writing), "a refused run must not touch the running one's files"
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err[-2000:]
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 1
    assert "last.ckpt holds epoch 1" in out and "--resume" in out, out
    assert not (run / LOCK).exists() and not list(run.glob(".*.tmp"))


def test_kill_9_leaves_a_stale_lock_and_temporary_that_the_next_run_cleans(run_copy, caplog):
    victim = _start(HOLD_AND_SAVE, run_copy, cwd=run_copy.parent, hang_at_epoch=3)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert (run_copy / LOCK).read_text().split()[0] == str(victim.pid)  # kill -9 cannot release it
    leftovers = list(run_copy.glob(".last.ckpt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    unrelated = [run_copy / "notes.tmp", run_copy / ".best.ckpt.tmp", run_copy / "mine.ckpt"]
    for p in unrelated:
        p.write_text("the user's")

    caplog.set_level("INFO")
    config = write_config(run_copy.parent / "train.yaml", run_copy, epochs=3)
    assert train_main([str(config), "--resume", "--no-progress"]) == 0
    assert f"PID {victim.pid}" in caplog.text and "taking over" in caplog.text, caplog.text
    assert not leftovers[0].exists()
    assert all(p.read_text() == "the user's" for p in unrelated)
    assert metric_epochs(run_copy) == [0, 1, 2, 3]
    assert not (run_copy / LOCK).exists()


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in a terminal. A background job of a shell script
    (`make test &`, some CI runners) inherits SIGINT ignored and Python keeps it ignored (so does
    gmnn-train, by convention): without this the Ctrl-C case depended on how pytest was started."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum, at_epoch, code, says", [
    (signal.SIGTERM, 2, 143, "last.ckpt holds epoch 1"),   # while epoch 2's checkpoints are written
    (signal.SIGINT, 1, 130, "no epoch was saved"),         # before the first epoch was saved
])
def test_interruption_exit_status_and_the_epoch_it_names(tmp_path, monkeypatch, capsys, ctrl_c_raises, signum,
                                                         at_epoch, code, says):
    """The signal arrives as the first checkpoint of epoch `at_epoch` is about to be written, i.e.
    after the epoch counter moved on but before last.ckpt holds it."""
    import gmnn.training as training
    real_save = training.save_checkpoint

    def save_then_signal(path, payload):
        if payload["epoch"] == at_epoch:
            signal.raise_signal(signum)
        return real_save(path, payload)
    monkeypatch.setattr(training, "save_checkpoint", save_then_signal)
    config = write_config(tmp_path / "train.yaml", tmp_path / "run", epochs=3)
    with pytest.raises(SystemExit) as exit_:
        train_main([str(config), "--no-progress"])
    assert exit_.value.code == code
    out = capsys.readouterr().out
    assert says in out, out
    last = tmp_path / "run" / "last.ckpt"
    assert (load_checkpoint(last)["epoch"] == 1) if at_epoch == 2 else not last.exists()
    assert not (tmp_path / "run" / LOCK).exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# ---- 3. gmnn-export's output -----------------------------------------------------------------

def test_export_refuses_its_own_input_and_files_it_did_not_write(run_copy, capsys):
    best = run_copy / "best.ckpt"
    original = best.read_bytes()
    (run_copy / "alias.ckpt").hardlink_to(best)
    (run_copy / "link.ckpt").symlink_to(best)
    for output in (best, run_copy / "alias.ckpt", run_copy / "link.ckpt", run_copy / ".." / "run" / "best.ckpt"):
        assert export_main([str(best), "-o", str(output)]) == 2
        assert "same file" in one_error_line(capsys)
    assert best.read_bytes() == original
    for other, what in ((run_copy / "last.ckpt", "training checkpoint"), (run_copy / "notes.txt", "not a gmnn model")):
        if not other.exists():
            other.write_text("my notes")
        kept = other.read_bytes()
        assert export_main([str(best), "-o", str(other)]) == 2
        line = one_error_line(capsys)
        assert str(other) in line and what in line and "--force" in line
        assert other.read_bytes() == kept
    assert export_main([str(best), "-o", str(run_copy / "notes.txt"), "--force"]) == 0
    assert export_main([str(best), "-o", str(run_copy / "notes.txt")]) == 0  # now a model file: replaced
    assert export_main([str(best), "-o", str(run_copy / "model.pt")]) == 0  # a new file


# ---- 4. checksums of checkpoints -------------------------------------------------------------

def flip_a_weight_byte(path):
    """XOR one byte in the middle of the largest tensor record (a weight matrix) in place."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        middle = info.file_size // 8 * 4  # a float32 in the middle of the matrix
        at = info.header_offset + 30 + name_len + extra_len + middle + 3  # its sign-and-exponent byte
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x7F]))


def test_a_flipped_weight_byte_in_a_checkpoint_is_refused_everywhere(run_copy, capsys):
    bad = run_copy / "best.ckpt"
    flip_a_weight_byte(bad)
    for load in (load_checkpoint, load_model):
        with pytest.raises(CheckpointError, match="checksum") as info:
            load(bad)
        assert str(bad) in str(info.value)
    assert export_main([str(bad), "-o", "model.pt"]) == 2
    assert "checksum" in one_error_line(capsys) and not Path("model.pt").exists()
    assert eval_main([str(bad), str(ETHANOL), "--index", "90:92", "--energy-unit", "kcal/mol"]) == 2
    assert "checksum" in one_error_line(capsys)
    load_model(run_copy / "last.ckpt")  # the intact one loads


def test_checkpoint_without_a_checksum_still_loads_with_a_warning(run_copy, caplog):
    """Checkpoints written before checksums existed: loaded, with a warning; the zip records'
    own CRCs are still checked, so a flipped byte is an error there too."""
    payload = torch.load(run_copy / "best.ckpt", weights_only=False)
    old = run_copy / "old.ckpt"
    torch.save(payload, old)  # what gmnn wrote before checkpoints carried a checksum
    with zipfile.ZipFile(old) as z:
        assert not any(n.endswith("checksum") for n in z.namelist())
    caplog.set_level("WARNING")
    model = load_model(old)
    assert "no checksum" in caplog.text and str(old) in caplog.text
    assert torch.equal(model.state_dict()["network.layers.0.weight"], payload["model"]["state_dict"]["network.layers.0.weight"])
    flip_a_weight_byte(old)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(old)


# ---- 5. --resume after the architecture changed ----------------------------------------------

def test_resume_with_a_changed_architecture_names_the_fields(run_copy, capsys):
    config = write_config(run_copy.parent / "train.yaml", run_copy, epochs=3, hidden=(4, 4), cutoff=4.0)
    assert train_main([str(config), "--resume", "--no-progress"]) == 2
    line = one_error_line(capsys)
    for part in ("last.ckpt", "model.hidden", "[4, 4]", "[8, 8]", "model.cutoff", "4.0", "5.0"):
        assert part in line, (part, line)
    assert "model.n_radial" not in line
    assert metric_epochs(run_copy) == [0, 1, 2]


def test_resume_of_a_finetune_with_other_frozen_layers_says_so(tmp_path, finished, capsys):
    config = write_config(tmp_path / "ft.yaml", tmp_path / "ft", epochs=1, finetune=True)
    args = [str(config), "--from", str(finished / "run" / "best.ckpt"), "--no-progress"]
    assert finetune_main(args) == 0
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2") + "  freeze: [dense0]\n")
    assert finetune_main(args + ["--resume"]) == 2
    line = one_error_line(capsys)
    assert "last.ckpt" in line and "finetune.freeze" in line, line


# ---- 8. a file that cannot be written is named -----------------------------------------------

def test_file_too_large_while_writing_a_checkpoint_names_it(tmp_path, capsys):
    """A real EFBIG: the file-size limit (ulimit -f) lies between config.json and a checkpoint."""
    config = write_config(tmp_path / "train.yaml", tmp_path / "run", epochs=1, hidden=(64, 64))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (80_000, hard))  # the 64 KiB write probe fits, 110 KB weights not
    try:
        status = train_main([str(config), "--no-progress"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert status == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "run" / "best.ckpt") in line and "File too large" in line, line
    assert not list((tmp_path / "run").glob(".*.tmp")) and not (tmp_path / "run" / LOCK).exists()


@pytest.mark.parametrize("name", ["metrics.csv", "final_metrics.json", "config.json"])
def test_file_too_large_while_writing_metrics_names_the_file(tmp_path, monkeypatch, capsys, name):
    import builtins
    real_open = builtins.open

    class TooLarge:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.EFBIG, "File too large")

        def __getattr__(self, attr):
            return getattr(self.f, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def opening(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return TooLarge(f) if str(file).endswith(name) and ("w" in mode or "a" in mode) else f
    monkeypatch.setattr(builtins, "open", opening)
    config = write_config(tmp_path / "train.yaml", tmp_path / "run", epochs=1)
    assert train_main([str(config), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert str(tmp_path / "run" / name) in line and "File too large" in line, line


# ---- 9. an exported model where a training checkpoint is needed ------------------------------

def test_exported_model_given_for_a_checkpoint_says_what_it_is(run_copy, finished, capsys):
    model = finished / "model.pt"
    ft = write_config(run_copy.parent / "ft.yaml", run_copy.parent / "ft", epochs=1, finetune=True)
    assert finetune_main([str(ft), "--from", str(model), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert f"{model} is an exported model file (gmnn-export output)" in line
    assert "fine-tuning needs the training checkpoint (.ckpt) it was exported from" in line
    assert export_main([str(model), "-o", "again.pt"]) == 2
    line = one_error_line(capsys)
    assert "is an exported model file" in line and "already" in line and not Path("again.pt").exists()
    shutil.copy(model, run_copy / "last.ckpt")
    config = write_config(run_copy.parent / "train.yaml", run_copy, epochs=3)
    assert train_main([str(config), "--resume", "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "last.ckpt is an exported model file" in line and "resuming needs the training checkpoint" in line
