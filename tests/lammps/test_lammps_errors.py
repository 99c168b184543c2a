"""Bad input to pair_style gmnn gives a LAMMPS error with a clear message, never a crash."""
import pytest

from lammps_testing import lammps_header, run_lmp, write_data
from parity_testing import STRUCTURES, bad_model_files


def run_expecting_error(inproc, commands):
    lmp = inproc.lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        lmp.command(f"plugin load {inproc.plugin}")
        with pytest.raises(Exception) as info:
            lmp.commands_string(commands)
        return str(info.value)
    finally:
        lmp.close()


@pytest.fixture
def data_file(tmp_path):
    return write_data(STRUCTURES["small_cell"](), tmp_path / "small.data")


def header(data_file, units="metal"):
    return lammps_header(data_file, True).replace("units metal", f"units {units}")


@pytest.mark.parametrize("coeff,fragment", [
    ("C H Xx", "unknown element symbol 'Xx' for atom type 3"),
    ("C H N", "element N (atom type 3) is not in model"),
    ("C H", "3 atom type(s) need 3 element symbol(s)"),
    ("C H O O", "3 atom type(s) need 3 element symbol(s)"),
    ("NULL NULL NULL", "all atom types are NULL"),
])
def test_bad_pair_coeff(inproc, model64, data_file, coeff, fragment):
    msg = run_expecting_error(inproc, header(data_file) + f"pair_style gmnn\npair_coeff * * {model64} {coeff}\n")
    assert fragment in msg, msg


def test_pair_coeff_must_be_star_star(inproc, model64, data_file):
    msg = run_expecting_error(inproc, header(data_file) + f"pair_style gmnn\npair_coeff 1 1 {model64} C H O\n")
    assert "must start with * *" in msg, msg  # LAMMPS checks this itself (one_coeff)


def test_units_other_than_metal(inproc, model64, data_file):
    msg = run_expecting_error(inproc, header(data_file, "real") + f"pair_style gmnn\npair_coeff * * {model64} C H O\nrun 0\n")
    assert "requires 'units metal'" in msg and "units real" in msg, msg


@pytest.mark.parametrize("args,fragment", [
    ("device gpu", "device must be auto, cpu, cuda or cuda:N"),
    ("speed fast", "unknown keyword 'speed'"),
    ("device", "needs a value"),
])
def test_bad_pair_style_arguments(inproc, data_file, args, fragment):
    msg = run_expecting_error(inproc, header(data_file) + f"pair_style gmnn {args}\n")
    assert fragment in msg, msg


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "garbage", "not_gmnn",
                                  "future_version", "real_units"])
def test_bad_model_file(inproc, model64, data_file, tmp_path, case):
    path, fragment = bad_model_files(tmp_path, model64)[case]
    msg = run_expecting_error(inproc, header(data_file) + f"pair_style gmnn\npair_coeff * * {path} C H O\n")
    assert fragment in msg and path in msg, msg


def test_cuda_without_gpu(inproc, native, model64, data_file):
    if native.cuda_available():
        pytest.skip("a GPU is visible")
    msg = run_expecting_error(inproc, header(data_file) + f"pair_style gmnn device cuda\npair_coeff * * {model64} C H O\n")
    assert "no CUDA support or no GPU" in msg, msg


def test_bad_model_under_mpirun_is_a_clean_error(lmp_exe, mpirun, model64, data_file, tmp_path):
    """2 ranks, corrupt file: lmp prints the LAMMPS ERROR and exits non-zero, no hang/segfault."""
    path, fragment = bad_model_files(tmp_path, model64)["truncated"]
    proc = run_lmp(lmp_exe, header(data_file) + f"pair_style gmnn\npair_coeff * * {path} C H O\nrun 0\n",
                   tmp_path, nprocs=2, mpirun=mpirun, check=False, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "ERROR" in out and fragment in out, out[-2000:]
    assert "Segmentation" not in out and "signal" not in out.lower(), out[-2000:]
