"""gmnn (PyTorch) against apax (JAX): the same GM-NN model on the same data, one CPU core each.

apax (https://github.com/apax-hub/apax) is the JAX implementation of the GM-NN model class.
This script installs it into its own virtual environment, `benchmarks/.venv-apax` (pinned
apax and jax[cpu], no torch; the project's `.venv` is never touched), runs it there in a
subprocess from a worker script written to a temporary file, and runs gmnn in this process,
back to back in one invocation:

- training: structures/s of a training epoch (energy + force loss, batches of 32, optimizer
  step) on the rMD17 ethanol frames, the same 96 structures (3 full batches: apax drops an
  incomplete last batch) for both; best of `--repeats` epochs after one warm-up epoch (for
  apax the warm-up epoch holds the JIT compilation, reported separately);
- inference: µs per atom for energy + forces of rattled diamond supercells (~10^3 and ~10^4
  atoms, r_c = 5 Å, ~86 neighbours per atom) and of the ethanol frames in batches of 32;
  neighbour list and model timed separately, JIT compilation excluded.

Same model in both: Gaussian basis (7 functions, centres r_min + k (r_c - r_min)/7,
r_min = 0.5 Å, width 49/r_c², normalised), cosine cutoff 5 Å, 5 radial functions with
element-pair coefficients, moments up to L = 3, all 8 contractions (360 features), NTK
network 360-512-512-1 with scaled swish, per-element scale/shift. apax is configured
explicitly to this (its defaults differ: Bessel basis, LeCun init, no NTK). The remaining
differences are written into the output (`model_differences`).

One core each: the script pins itself and the worker to one CPU (the idlest one when it
starts; the worker before it imports jax, so every thread XLA starts inherits the mask), sets
torch.set_num_threads(1), OMP_NUM_THREADS=1 and XLA_FLAGS=--xla_cpu_multi_thread_eigen=false.
Unpinned, XLA splits a large dot over two threads of its own pool whatever XLA_FLAGS says
(there is no XLA flag for the CPU client's intra-op pool; a bare `intra_op_parallelism_threads=1`
token is ignored after a `--` flag and is read as a flag file name when alone). For every timed
part it records the minimum wall time, the minimum CPU time of one repeat and process CPU time /
wall time over the repeats (above 1: more than one core busy; below 1: the core was shared with
other jobs), and the affinity of every thread of both processes.

Peaks, measured in the same run on the same CPU: a 2048² matmul of random matrices in torch and
in XLA (result checked against numpy), and, where a C compiler is present, the one-core FP32 FMA
ceilings with 256-bit (AVX2) and 512-bit (AVX-512) vectors and the clock (a chain of dependent
integer adds). On AMD, MKL (torch) runs its AVX2 kernel while XLA's dot (YNNPACK) runs an
AVX-512 one, so on a core with full-width AVX-512 XLA's matmul peak is about twice torch's.

If apax cannot be installed, the script says so and reports gmnn alone, against the
project's naive baseline (the same GM-NN written directly with dense per-atom neighbour
tensors, no edge list, `--no-apax` forces this path).

    python benchmarks/apax_comparison.py [--quick] [--repeats 3] [--sizes 1000 10000] [--no-float64]

Writes benchmarks/results/apax_comparison.json and .md, prints the table.
"""
import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

APAX_PIN = "0.14.0"
JAX_PIN = "0.10.2"
VENV = ROOT / "benchmarks" / ".venv-apax"
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"
BATCH = 32
CUTOFF = 5.0
HIDDEN = (512, 512)


# --------------------------------------------------------------------------------------------
# one CPU
# --------------------------------------------------------------------------------------------

def _cpu_busy():
    with open("/proc/stat") as f:
        rows = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
    return {int(r[0][3:]): (sum(map(int, r[1:])), int(r[4]) + int(r[5])) for r in rows}


def idlest_cpu(seconds=1.0):
    """The allowed CPU with the most idle time over `seconds` (another job may hold one)."""
    allowed = sorted(os.sched_getaffinity(0))
    a = _cpu_busy()
    time.sleep(seconds)
    b = _cpu_busy()
    idle = {c: (b[c][1] - a[c][1]) / max(1, b[c][0] - a[c][0]) for c in allowed if c in a and c in b}
    return max(idle, key=idle.get) if idle else allowed[0]


def cpu_seconds():
    return time.process_time()


def thread_affinities():
    """The distinct CPU sets of this process's threads (one entry, [cpu], when pinned)."""
    found = set()
    for t in os.listdir("/proc/self/task"):
        try:
            found.add(tuple(sorted(os.sched_getaffinity(int(t)))))
        except OSError:
            pass
    return sorted(list(a) for a in found)


TIMED = []   # what recording_best_of saw since the last TIMED.clear()


def recording_best_of(fn, repeats):
    """train_throughput.best_of (min wall time of fn() over repeats) that also records the
    min CPU time of one repeat and CPU time / wall time over the repeats in TIMED."""
    walls, cpus, c0, w0 = [], [], cpu_seconds(), time.perf_counter()
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_seconds() - c)
    TIMED.append({"wall_s": min(walls), "cpu_s": min(cpus),
                  "cpu_per_wall": (cpu_seconds() - c0) / (time.perf_counter() - w0)})
    return min(walls)


CEILINGS_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double cpu(void){struct timespec t;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static double wall(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
#define BODY(T,F,S) T m=S(0.999999f),c=S(1e-7f); T a0=S(0),a1=S(1),a2=S(2),a3=S(3),a4=S(4),a5=S(5),a6=S(6),a7=S(7),a8=S(8),a9=S(9),a10=S(10),a11=S(11); \
  for(long i=0;i<it;i++){a0=F(a0,m,c);a1=F(a1,m,c);a2=F(a2,m,c);a3=F(a3,m,c);a4=F(a4,m,c);a5=F(a5,m,c);a6=F(a6,m,c);a7=F(a7,m,c);a8=F(a8,m,c);a9=F(a9,m,c);a10=F(a10,m,c);a11=F(a11,m,c);} \
  T s=a0+a1+a2+a3+a4+a5+a6+a7+a8+a9+a10+a11;
__attribute__((target("avx2,fma"))) static float f256(long it){ BODY(__m256,_mm256_fmadd_ps,_mm256_set1_ps) float o[8]; _mm256_storeu_ps(o,s); return o[0];}
__attribute__((target("avx512f"))) static float f512(long it){ BODY(__m512,_mm512_fmadd_ps,_mm512_set1_ps) return _mm512_reduce_add_ps(s);}
int main(int argc, char **argv){
  long n=1000000000L, x=0; double c0=cpu(), w0=wall();
  __asm__ volatile("1: add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n sub $4, %1\n jnz 1b" : "+r"(x), "+r"(n));
  double c=cpu()-c0, w=wall()-w0;
  printf("{\"clock_ghz\": %.3f, \"clock_cpu_per_wall\": %.3f", 1.0/c, c/w);
  long it=50000000L; c0=cpu(); w0=wall(); float r=f256(it); c=cpu()-c0; w=wall()-w0;
  printf(", \"avx2_fma_gflops_per_cpu_s\": %.1f, \"avx2_cpu_per_wall\": %.3f", it*12*8*2/c/1e9, c/w);
  if (argc > 1) { c0=cpu(); w0=wall(); r+=f512(it); c=cpu()-c0; w=wall()-w0;
    printf(", \"avx512_fma_gflops_per_cpu_s\": %.1f, \"avx512_cpu_per_wall\": %.3f", it*12*16*2/c/1e9, c/w); }
  printf(", \"check\": %g}\n", r);
  return 0;
}
"""


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fma_ceilings():
    """One-core FP32 FMA throughput per CPU second with 256-bit and (where the CPU has it)
    512-bit vectors, 12 independent accumulators, and the clock from 10^9 dependent integer
    adds (one per cycle); None without a C compiler. Runs in this (pinned) process's CPU set."""
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or "fma" not in cpu_flags():
        return None
    d = Path(tempfile.mkdtemp(prefix="fma_ceilings_"))
    (d / "f.c").write_text(CEILINGS_C)
    r = subprocess.run([cc, "-O2", "-o", str(d / "f"), str(d / "f.c")], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    args = [str(d / "f")] + (["512"] if "avx512f" in cpu_flags() else [])
    r = subprocess.run(args, capture_output=True, text=True)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        return {"error": (r.stdout + r.stderr).strip()[-300:]}
    out.pop("check", None)
    for k in ("avx2", "avx512"):
        if f"{k}_fma_gflops_per_cpu_s" in out:
            out[f"{k}_fma_flop_per_cycle"] = out[f"{k}_fma_gflops_per_cpu_s"] / out["clock_ghz"]
    return out


def torch_peak(dtype, n=2048, repeats=5):
    """The 2048² matmul of random matrices in torch, as the worker's peak() for XLA."""
    import numpy as np
    import torch
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, dtype=dtype, generator=g), torch.randn(n, n, dtype=dtype, generator=g)
    r = (a @ b).numpy()
    ref = a[:8].double().numpy() @ b.double().numpy()
    TIMED.clear()
    s = recording_best_of(lambda: a @ b, repeats)
    t = TIMED[-1]
    return {"n": n, "gflops": 2 * n ** 3 / s / 1e9, "gflops_per_cpu_s": 2 * n ** 3 / t["cpu_s"] / 1e9,
            "cpu_per_wall": t["cpu_per_wall"], "max_rel_err": float(np.abs(r[:8] - ref).max() / np.abs(ref).max()),
            "thread_affinities": thread_affinities(), "threads": len(os.listdir("/proc/self/task"))}


# --------------------------------------------------------------------------------------------
# the apax environment
# --------------------------------------------------------------------------------------------

def apax_python(venv_dir: Path, log):
    """Create (once) the apax venv with pinned versions; return its python or None."""
    py = venv_dir / "bin" / "python"
    check = ("import importlib.metadata as m; "
             "print(m.version('apax'), m.version('jax'), m.version('jaxlib'))")
    if py.exists():
        r = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.split()[:2] == [APAX_PIN, JAX_PIN]:
            return py
        found = r.stdout.strip() or r.stderr.strip()[-200:]
        log(f"apax venv at {venv_dir} is incomplete or has other versions ({found}); reinstalling")
    log(f"creating {venv_dir} and installing apax=={APAX_PIN} jax[cpu]=={JAX_PIN} (about a minute)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [[base, "-m", "venv", "--clear", str(venv_dir)],
             [str(py), "-m", "pip", "install", "--quiet", f"apax=={APAX_PIN}", f"jax[cpu]=={JAX_PIN}"]]
    install_log = Path(tempfile.gettempdir()) / "apax-venv-install.log"
    with open(install_log, "w") as out:
        for cmd in steps:
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                log(f"APAX COULD NOT BE INSTALLED: `{' '.join(cmd)}` exited {r.returncode}; see {install_log}")
                return None
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"APAX COULD NOT BE IMPORTED after installation: {r.stderr.strip()[-400:]}")
        return None
    r = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    if r.returncode == 0:
        log("warning: torch is importable in the apax venv (pulled in by a dependency)")
    return py


def worker_source() -> str:
    """WORKER with this file's thread_affinities() in it (the worker runs in the apax venv and
    cannot import this module, which needs torch)."""
    marker = "# THREAD_AFFINITIES: thread_affinities() of apax_comparison.py, pasted in by worker_source()\n"
    assert marker in WORKER
    return WORKER.replace(marker, inspect.getsource(thread_affinities))


# --------------------------------------------------------------------------------------------
# the apax worker: runs in the apax venv, reads an npz + json task, prints one JSON line
# --------------------------------------------------------------------------------------------

WORKER = r'''
import json, os, sys, tempfile, time
task = json.load(open(sys.argv[1]))
os.sched_setaffinity(0, {task["cpu"]})          # before jax starts its thread pool
import numpy as np
import jax, jax.numpy as jnp
import apax
from functools import partial
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from apax.config import parse_config
from apax.data.input_pipeline import CachedInMemoryDataset
from apax.data.preprocessing import compute_nl
from apax.data.statistics import compute_scale_shift_parameters
from apax.optimizer import get_opt
from apax.train.checkpoints import create_params, create_train_state
from apax.train.metrics import initialize_metrics
from apax.train.run import initialize_loss_fn
from apax.train.trainer import make_step_fns

data = np.load(task["npz"])
out = {"versions": {}, "training": [], "inference": [], "compile_s": {}}
import importlib.metadata as md
for p in ("apax", "jax", "jaxlib", "flax", "optax", "numpy", "vesin"):
    out["versions"][p] = md.version(p)
out["devices"] = [str(d) for d in jax.devices()]
out["threads_in_process"] = len(os.listdir("/proc/self/task"))

# THREAD_AFFINITIES: thread_affinities() of apax_comparison.py, pasted in by worker_source()

def cpu():
    return time.process_time()

def best_of(fn, repeats):
    """min wall time of fn() over repeats, cpu/wall of all of them, min CPU time of one"""
    times, cpus, c0, w0 = [], [], cpu(), time.perf_counter()
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu(); fn(); times.append(time.perf_counter() - t); cpus.append(cpu() - c)
    return min(times), (cpu() - c0) / (time.perf_counter() - w0), min(cpus)

def config(dtype, n_train):
    fp = {"float32": "fp32", "float64": "fp64"}[dtype]
    return parse_config({
        "n_epochs": 1000, "seed": 1,
        "data": {"directory": tempfile.gettempdir(), "experiment": "apax_bench", "data_path": "unused",
                 "n_train": n_train, "n_valid": 1, "batch_size": task["batch"],
                 "shift_method": "per_element_regression_shift", "scale_method": "per_element_force_rms_scale",
                 "pos_unit": "Ang", "energy_unit": "eV"},
        "model": {"name": "gmnn", "basis": {"name": "gaussian", "n_basis": 7, "r_min": 0.5,
                                              "r_max": task["cutoff"], "spacing": "linear"},
                  "n_radial": 5, "n_contr": 8, "nn": task["hidden"], "emb_init": "uniform",
                  "w_init": "normal", "b_init": "zeros", "use_ntk": True,
                  "activation_fn": "variance_preserving_swish", "calc_stress": False,
                  "descriptor_dtype": fp, "readout_dtype": fp, "scale_shift_dtype": "fp64"},
        "metrics": [],
        # apax sums the force error over atoms and components and divides by N_atoms;
        # gmnn averages over atoms and components: weight 4/3 here = w_F 4 there
        "loss": [{"name": "energy", "loss_type": "mse", "weight": 1.0, "atoms_exponent": 1},
                 {"name": "forces", "loss_type": "mse", "weight": task["force_weight"] / 3.0, "atoms_exponent": 1}],
        "optimizer": {"name": "amsgrad", "emb_lr": 1e-3, "nn_lr": 1e-3, "scale_lr": 1e-3, "shift_lr": 1e-3},
    })

def ethanol_atoms():
    frames = []
    for k in range(data["eth_pos"].shape[0]):
        a = Atoms(numbers=data["eth_num"], positions=data["eth_pos"][k])
        a.calc = SinglePointCalculator(a, energy=float(data["eth_energy"][k]), forces=data["eth_forces"][k])
        frames.append(a)
    return frames

def training(dtype):
    cfg = config(dtype, len(data["eth_pos"]))
    tmp = tempfile.mkdtemp(prefix="apax_bench_")
    ds = CachedInMemoryDataset(ethanol_atoms(), cfg.model.basis.r_max, cfg.data.batch_size, cfg.n_epochs,
                               pos_unit="Ang", energy_unit="eV", pre_shuffle=True, cache_path=tmp)
    stats = compute_scale_shift_parameters(ds.inputs, ds.labels, cfg.data.shift_method, cfg.data.scale_method,
                                           cfg.data.shift_options, cfg.data.scale_options)
    sample_input, init_box = ds.init_input()
    builder = cfg.model.get_builder()(cfg.model.model_dump())
    model = builder.build_energy_derivative_model(scale=stats.elemental_scale, shift=stats.elemental_shift,
                                                  apply_mask=True, init_box=init_box)
    batched_model = jax.vmap(model.apply, in_axes=(None, 0, 0, 0, 0, 0))
    params, _ = create_params(model, jax.random.PRNGKey(cfg.seed), sample_input, 1)
    steps = ds.steps_per_epoch()
    tx = get_opt(params, cfg.n_epochs, steps, **cfg.optimizer.model_dump())
    state = create_train_state(batched_model, params, tx)
    Metrics = initialize_metrics(cfg.metrics)
    train_step, _ = make_step_fns(initialize_loss_fn(cfg.loss), Metrics, model=state.apply_fn, is_ensemble=False)
    it = ds.shuffle_and_batch(None)
    batches = [next(it) for _ in range(steps)]            # the data pipeline is not timed (as in gmnn)
    carry = [state]

    def epoch():
        c = (carry[0], Metrics.empty())
        for b in batches:
            c, loss = train_step(c, b)
        jax.block_until_ready(c)
        carry[0] = c[0]
        return float(loss)
    t = time.perf_counter(); epoch(); t_first = time.perf_counter() - t
    seconds, ratio, cpu_s = best_of(epoch, task["repeats"])
    n = steps * cfg.data.batch_size
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    emb = params["params"]["energy_model"]["representation"]["radial_fn"]["atomic_type_embedding"]
    n_el = len(set(int(z) for z in data["eth_num"]))
    # per-atom inference of the same batches (energy + forces, no training)
    infer = jax.jit(partial(batched_model, carry[0].params))
    def run():
        jax.block_until_ready([infer(*(b[0][k] for k in ("positions", "numbers", "idx", "box", "offsets")))
                               for b in batches])
    t = time.perf_counter(); run(); t_compile = time.perf_counter() - t
    t_inf, ratio_inf, cpu_inf = best_of(run, task["repeats"])
    n_atoms = int(sum(int(np.sum(b[0]["n_atoms"])) for b in batches))
    return {"dtype": dtype, "structures_per_s": n / seconds, "epoch_s": seconds, "n_structures": n,
            "structures_per_cpu_s": n / cpu_s, "epoch_cpu_s": cpu_s,
            "first_epoch_s": t_first, "cpu_per_wall": ratio, "last_loss": epoch(),
            "n_parameters": n_params,
            "n_parameters_without_unused_species": n_params - emb.size // emb.shape[0] ** 2 * (emb.shape[0] ** 2 - n_el ** 2),
            "padded_atoms": int(batches[0][0]["numbers"].shape[1]), "padded_edges": int(batches[0][0]["idx"].shape[2]),
            "inference_us_per_atom": 1e6 * t_inf / n_atoms, "inference_compile_s": t_compile,
            "inference_cpu_us_per_atom": 1e6 * cpu_inf / n_atoms, "inference_cpu_per_wall": ratio_inf}

def inference(n_atoms_key, dtype):
    pos, cell = data[f"pos_{n_atoms_key}"], data[f"cell_{n_atoms_key}"]
    n = len(pos)
    box = cell.T                                           # apax's column convention
    frac = pos @ np.linalg.inv(cell)
    cfg = config(dtype, 1)
    builder = cfg.model.get_builder()(cfg.model.model_dump())
    model = builder.build_energy_derivative_model(apply_mask=True, init_box=np.array(box))
    Z = jnp.full(n, 6, dtype=jnp.int32)
    t_nl, ratio_nl, cpu_nl = best_of(lambda: compute_nl(frac, box, cfg.model.basis.r_max), task["repeats"])
    idx, offsets = compute_nl(frac, box, cfg.model.basis.r_max)
    args = (jnp.asarray(frac), Z, jnp.asarray(idx), jnp.asarray(box), jnp.asarray(offsets))
    params = model.init(jax.random.PRNGKey(1), *args)
    # as apax's ASE calculator evaluates with a host neighbour list (md/ase_calc.py get_step_fn)
    step = jax.jit(lambda R, nbr, b, off: partial(model.apply, params)(R, Z, nbr, b, off))
    t = time.perf_counter(); res = step(args[0], args[2], args[3], args[4]); jax.block_until_ready(res)
    t_compile = time.perf_counter() - t
    t_model, ratio, cpu_model = best_of(lambda: jax.block_until_ready(step(args[0], args[2], args[3], args[4])),
                                        task["repeats"])
    f = np.asarray(res["forces"])
    return {"n_atoms": n, "dtype": dtype, "edges_per_atom": idx.shape[1] / n,
            "neighbor_list_us_per_atom": 1e6 * t_nl / n, "model_us_per_atom": 1e6 * t_model / n,
            "total_us_per_atom": 1e6 * (t_nl + t_model) / n, "compile_s": t_compile, "cpu_per_wall": ratio,
            "neighbor_list_cpu_us_per_atom": 1e6 * cpu_nl / n, "model_cpu_us_per_atom": 1e6 * cpu_model / n,
            "total_cpu_us_per_atom": 1e6 * (cpu_nl + cpu_model) / n,
            "neighbor_list_cpu_per_wall": ratio_nl, "net_force": float(np.abs(f.sum(0)).max())}

def equivalence():
    """gmnn's float64 parameters loaded into apax's model: same features, energies and forces?"""
    cfg = config("float64", 1)
    builder = cfg.model.get_builder()(cfg.model.model_dump())
    model = builder.build_energy_derivative_model(scale=np.ones(119), shift=np.zeros(119), apply_mask=True,
                                                  init_box=np.zeros(3))
    zs, pc = [int(z) for z in data["eq_numbers"]], data["eq_pc"]
    emb = np.zeros((119, 119) + pc.shape[2:])
    for a, za in enumerate(zs):          # apax sums moments onto idx_j and reads embeddings[Z_j, Z_i]:
        for b, zb in enumerate(zs):      # [centre element, neighbour element], as gmnn's pc[a, b]
            emb[za, zb] = pc[a, b]
    numbers = data["eth_num"]
    Z = jnp.asarray(numbers)

    def inputs(k):
        pos = data["eth_pos"][k]
        idx, off = compute_nl(pos, np.zeros((3, 3)), cfg.model.basis.r_max)
        return pos, idx, off
    pos, idx, off = inputs(0)
    desc = builder.build_descriptor(apply_mask=True)
    feats = np.asarray(desc.apply({"params": {"radial_fn": {"atomic_type_embedding": jnp.asarray(emb)}}},
                                  jnp.asarray(pos[idx[1]] - pos[idx[0]]), Z, jnp.asarray(idx)))
    g = data["eq_features"]
    scale = np.abs(g).max(0) + 1e-30
    perm, worst = [], 0.0
    for k in range(g.shape[1]):
        d = np.abs(feats - g[:, k:k + 1]).max(0) / scale[k]
        j = int(np.argmin(d)); perm.append(j); worst = max(worst, float(d[j]))
    bijective = len(set(perm)) == g.shape[1] == feats.shape[1]
    p = {"energy_model": {"representation": {"radial_fn": {"atomic_type_embedding": jnp.asarray(emb)}},
                          "readout": {}, "scale_shift": {}}}
    n_layers = len([key for key in data.files if key.startswith("eq_w")])
    for l in range(n_layers):
        W, bias = data[f"eq_w{l}"], data[f"eq_b{l}"]          # gmnn: (out, in)
        w = np.zeros((W.shape[1], W.shape[0]))
        if l == 0:
            w[perm] = W.T                                     # apax's feature order
        else:
            w = W.T
        p["energy_model"]["readout"][f"dense_{l}"] = {"w": jnp.asarray(w), "b": jnp.asarray(bias)}
    sc, sh = np.ones((119, 1)), np.zeros((119, 1))
    for a, za in enumerate(zs):
        sc[za, 0], sh[za, 0] = data["eq_scale"][a], data["eq_shift"][a]
    p["energy_model"]["scale_shift"] = {"scale_per_element": jnp.asarray(sc), "shift_per_element": jnp.asarray(sh)}
    dE, dF = [], []
    for k in range(len(data["eq_energy"])):
        pos, idx, off = inputs(k)
        r = model.apply({"params": p}, jnp.asarray(pos), Z, jnp.asarray(idx), jnp.zeros((3, 3)), jnp.asarray(off))
        dE.append(abs(float(r["energy"]) - float(data["eq_energy"][k])))
        dF.append(float(np.abs(np.asarray(r["forces"]) - data["eq_forces"][k]).max()))
    return {"features_matched_one_to_one": bool(bijective), "feature_max_rel_diff": worst,
            "feature_order_is_same": perm == list(range(len(perm))), "n_frames": len(dE),
            "energy_max_abs_diff_eV": max(dE), "force_max_abs_diff_eV_per_A": max(dF),
            "force_rms_eV_per_A": float(np.sqrt(np.mean(data["eq_forces"] ** 2)))}

def peak(dtype, n=2048, repeats=5):
    """an n x n matmul of random matrices (2 n^3 FLOP), checked against numpy on 8 rows"""
    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a, b = jnp.asarray(A), jnp.asarray(B)
    assert a.dtype == np.dtype(dtype) and a.shape == (n, n)
    f = jax.jit(lambda x, y: x @ y)
    r = np.asarray(f(a, b).block_until_ready())
    ref = A[:8].astype(np.float64) @ B.astype(np.float64)
    s, ratio, cpu_s = best_of(lambda: f(a, b).block_until_ready(), repeats)
    return {"n": n, "gflops": 2 * n ** 3 / s / 1e9, "gflops_per_cpu_s": 2 * n ** 3 / cpu_s / 1e9,
            "cpu_per_wall": ratio, "max_rel_err": float(np.abs(r[:8] - ref).max() / np.abs(ref).max()),
            "thread_affinities": thread_affinities(), "threads": len(os.listdir("/proc/self/task"))}

if task["part"] == "training":
    if "eq_pc" in data.files:
        out["equivalence"] = equivalence()
        print("apax equivalence check done", file=sys.stderr, flush=True)
    out["peak_matmul"] = {dt: peak(dt) for dt in task["dtypes"]}
    for dt in task["dtypes"]:
        out["training"].append(training(dt))
        print("apax training", dt, "done", file=sys.stderr, flush=True)
else:
    for key in task["sizes"]:
        for dt in task["dtypes"]:
            out["inference"].append(inference(key, dt))
            print("apax inference", key, dt, "done", file=sys.stderr, flush=True)
out["threads_in_process_at_end"] = len(os.listdir("/proc/self/task"))
out["thread_affinities_at_end"] = thread_affinities()
print("APAX_RESULT " + json.dumps(out), flush=True)
'''


def run_apax(py, task, workdir, log, timeout):
    worker = Path(workdir) / "apax_worker.py"
    worker.write_text(worker_source())
    task_file = Path(workdir) / f"task_{task['part']}.json"
    task_file.write_text(json.dumps(task))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", XLA_FLAGS=XLA_FLAGS,
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    try:
        r = subprocess.run([str(py), str(worker), str(task_file)], capture_output=True, text=True,
                           env=env, cwd=workdir, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"apax worker ({task['part']}) timed out after {timeout} s")
        return None
    for line in r.stdout.splitlines():
        if line.startswith("APAX_RESULT "):
            res = json.loads(line[len("APAX_RESULT "):])
            res["subprocess_s"] = time.perf_counter() - t
            return res
    log(f"apax worker ({task['part']}) failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return None


# --------------------------------------------------------------------------------------------
# gmnn (this process), through the paths of train_throughput.py
# --------------------------------------------------------------------------------------------

def diamond(n_target):
    """The rattled diamond supercell of train_throughput.inference_cost."""
    from ase.build import bulk
    base = bulk("C", "diamond", a=3.57, cubic=True)
    reps = max(1, round((n_target / 8) ** (1 / 3)))
    atoms = base * (reps, reps, reps)
    atoms.rattle(0.05, seed=0)
    return atoms


def gmnn_training(structures, dtype, repeats):
    import train_throughput as tt
    TIMED.clear()
    r = tt.training_throughput(structures, dtype, HIDDEN, batch_size=BATCH, repeats=repeats)
    (epoch,) = TIMED
    r.update(cpu_per_wall=epoch["cpu_per_wall"], epoch_cpu_s=epoch["cpu_s"],
             structures_per_cpu_s=r["n_structures"] / epoch["cpu_s"])
    r.update(gmnn_batch_inference(structures, dtype, repeats))
    return {"dtype": dtype, **r}


def gmnn_batch_inference(structures, dtype, repeats):
    """Energy + forces of the training batches (no graph for a second derivative)."""
    import torch
    import train_throughput as tt
    from gmnn import build_model
    from gmnn.graph import build_graphs, collate
    from gmnn.inference import predict
    elements = sorted({int(z) for s in structures for z in s.numbers})
    model = build_model(elements, hidden=HIDDEN, dtype=dtype).eval()
    graphs = build_graphs(structures, model.atomic_numbers, model.cutoff)
    batches = [collate(graphs[k:k + BATCH]) for k in range(0, len(graphs), BATCH)]

    def run():
        for b in batches:
            predict(model, b, forces=True)
    run()
    TIMED.clear()
    seconds = tt.best_of(run, repeats)
    (t,) = TIMED
    n_atoms = sum(g.n_atoms for g in graphs)
    n_params = sum(p.numel() for p in model.parameters())
    return {"inference_us_per_atom": 1e6 * seconds / n_atoms, "inference_cpu_per_wall": t["cpu_per_wall"],
            "inference_cpu_us_per_atom": 1e6 * t["cpu_s"] / n_atoms, "n_parameters": int(n_params)}


def gmnn_reference(structures, n_frames=4):
    """A float64 gmnn model (random network, fitted scale/shift) and what it predicts, for the
    check that apax with these parameters is the same function."""
    import numpy as np
    import torch
    from gmnn import build_model
    from gmnn.graph import build_graphs, collate
    from gmnn.inference import predict
    from gmnn.scale_shift import fit_scale_shift
    torch.manual_seed(0)
    elements = sorted({int(z) for s in structures for z in s.numbers})
    model = build_model(elements, hidden=HIDDEN, dtype="float64").eval()
    graphs = build_graphs(structures, model.atomic_numbers, model.cutoff)
    fit_scale_shift(model, graphs)
    out = predict(model, collate(graphs[:n_frames]), forces=True)
    g0 = graphs[0]
    with torch.no_grad():
        features = model.descriptor(g0.edge_vectors, g0.centers, g0.neighbors, g0.species, g0.n_atoms)
    arrays = {"eq_numbers": np.array(model.atomic_numbers), "eq_features": features.numpy(),
              "eq_pc": model.descriptor.radial.pair_coefficients.detach().numpy(),
              "eq_energy": out["energy"].detach().numpy(),
              "eq_forces": out["forces"].detach().numpy().reshape(n_frames, -1, 3),
              "eq_scale": model.scale_shift.scale.detach().numpy(),
              "eq_shift": model.scale_shift.shift.detach().numpy()}
    for k, layer in enumerate(model.network.linear_layers()):
        arrays[f"eq_w{k}"], arrays[f"eq_b{k}"] = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    return arrays


def gmnn_inference(n_target, dtype, repeats):
    import train_throughput as tt
    TIMED.clear()
    r = tt.inference_cost(n_target, dtype, HIDDEN, repeats=repeats)
    nl, model = TIMED
    n = r["n_atoms"]
    r.update(cpu_per_wall=model["cpu_per_wall"], neighbor_list_cpu_per_wall=nl["cpu_per_wall"],
             neighbor_list_cpu_us_per_atom=1e6 * nl["cpu_s"] / n, model_cpu_us_per_atom=1e6 * model["cpu_s"] / n,
             total_cpu_us_per_atom=1e6 * (nl["cpu_s"] + model["cpu_s"]) / n)
    return {"dtype": dtype, **r}


# --------------------------------------------------------------------------------------------
# the naive baseline (only when apax is not available)
# --------------------------------------------------------------------------------------------

def naive_inference(atoms, dtype, repeats):
    """The same GM-NN written the direct way: per-atom dense neighbour tensors (N, M) padded
    to the largest neighbour count, moments by broadcasting over the padded slots, gmnn's own
    radial functions, contractions and network, forces by autograd on the positions. This is
    the project's naive baseline (used only when apax is not available)."""
    import torch
    import train_throughput as tt
    from gmnn import build_model
    from gmnn.neighbors import neighbor_list
    model = build_model(["C"], hidden=HIDDEN, dtype=dtype).eval()
    desc = model.descriptor
    tdt = model.dtype
    nl = neighbor_list(atoms.positions, CUTOFF, atoms.cell.array, atoms.pbc)
    n = len(atoms)
    centers = torch.from_numpy(nl.centers)
    counts = torch.bincount(centers, minlength=n)
    m = int(counts.max())
    slot = torch.arange(len(centers)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    neighbors = torch.from_numpy(nl.neighbors)
    shift = torch.tensor(nl.vectors) - (pos[neighbors] - pos[centers])   # periodic image shifts
    S = torch.zeros(n, m, 3, dtype=tdt)
    S[centers, slot] = shift.to(tdt)
    J = torch.zeros(n, m, dtype=torch.long)
    J[centers, slot] = neighbors
    mask = torch.zeros(n, m, dtype=tdt)
    mask[centers, slot] = 1.0
    species = torch.zeros(n * m, dtype=torch.long)

    def energy_forces():
        x = pos.to(tdt).requires_grad_(True)
        v = x[J] + S - x.unsqueeze(1)                                   # (N, M, 3)
        r = torch.sqrt((v * v).sum(-1) + (1.0 - mask))                  # padded slots: r = 1
        u = v / r.unsqueeze(-1)
        R = desc.radial(r.reshape(-1), species, species).reshape(n, m, -1) * mask.unsqueeze(-1)
        p0 = R.sum(1)
        p1 = torch.einsum("nms,nma->nsa", R, u)
        p2 = torch.einsum("nms,nma,nmb->nsab", R, u, u)
        p3 = torch.einsum("nms,nma,nmb,nmc->nsabc", R, u, u, u)
        s = p0.shape[1]
        moments = torch.cat([p0.unsqueeze(-1), p1, p2.reshape(n, s, 9), p3.reshape(n, s, 27)], -1)
        e = model.network(desc.contract(moments)).sum()
        (gx,) = torch.autograd.grad(e, x)
        return -gx
    f_naive = energy_forces()
    seconds = tt.best_of(energy_forces, repeats)
    from gmnn.inference import forces_and_virials
    v = torch.tensor(nl.vectors, dtype=tdt, requires_grad=True)
    (g,) = torch.autograd.grad(model(v, centers, neighbors, torch.zeros(n, dtype=torch.long), n).sum(), v)
    f_gmnn, _ = forces_and_virials(g, v, centers, neighbors, n)
    return {"n_atoms": n, "dtype": dtype, "model_us_per_atom": 1e6 * seconds / n, "neighbors_padded_to": m,
            "force_max_abs_diff_to_gmnn": float((f_naive - f_gmnn).abs().max())}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

def _cpu_per_wall_values(node):
    """every cpu_per_wall-like number in a result tree (one per timed part)"""
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith("cpu_per_wall") and isinstance(v, (int, float)):
                yield k, v
            else:
                yield from _cpu_per_wall_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _cpu_per_wall_values(v)


def one_core_summary(side, affinities):
    values = [v for _, v in _cpu_per_wall_values(side)]
    return {"thread_affinities": affinities, "timed_parts": len(values),
            "cpu_per_wall_min": min(values) if values else None, "cpu_per_wall_max": max(values) if values else None}


def ratio(a, b):
    return a / b if a and b else float("nan")


def ratios_over_apax(gmnn, apax, fields):
    """{output name: {row label: gmnn / apax}} for fields = {output name: (section, field)}; rows
    pair by dtype (training) or by atoms and dtype (inference), as the labels say."""
    def label(section, row):
        return f"{row['n_atoms']} {row['dtype']}" if section == "inference" else row["dtype"]
    out = {}
    for name, (section, field) in fields.items():
        theirs = {label(section, u): u for u in apax[section]}
        out[name] = {label(section, t): ratio(t[field], theirs[label(section, t)][field])
                     for t in gmnn[section] if label(section, t) in theirs}
    return out


def markdown(res):
    L = []
    g, a = res["gmnn"], res.get("apax")
    L.append(f"gmnn {res['versions']['gmnn']} (torch {res['versions']['torch']}) vs "
             + (f"apax {a['versions']['apax']} (jax {a['versions']['jax']}, jaxlib {a['versions']['jaxlib']}, "
                f"flax {a['versions']['flax']})" if a else "apax: NOT AVAILABLE")
             + f"; one core each: CPU {res['cpu']} of {res['machine']['cpu_model']} "
             + "(family {cpu family} model {model}".format(**{"cpu family": "?", "model": "?",
                                                            **res["machine"].get("cpu_family_model", {})})
             + (", AVX-512" if res["machine"].get("avx512f") else ", no AVX-512")
             + f"; load average {res['machine']['load_before'][0]:.2f} before, "
             f"{res['machine']['load_after'][0]:.2f} after, on {res['machine']['cores']} cores).")
    oc = res.get("one_core", {})
    if oc:
        L.append("")
        L.append("One core: " + "; ".join(
            f"{side}: all threads on {', '.join(map(str, o['thread_affinities'] or []))}, CPU time / wall time of "
            f"its {o['timed_parts']} timed parts {o['cpu_per_wall_min']:.2f}-{o['cpu_per_wall_max']:.2f}"
            for side, o in oc.items() if o["timed_parts"])
            + " (above 1 would mean more than one core; below 1, the core was shared with other jobs, which "
              "the CPU-time ratios below discount).")
    L.append("")
    L.append("Training epoch on rMD17 ethanol (energy + force loss, batches of 32, optimizer step), "
             "best of the epochs after the first:")
    L.append("")
    if a:
        L.append("| dtype | structures | gmnn structures/s | apax structures/s | gmnn / apax "
                 "| gmnn / apax (CPU time) | CPU/wall gmnn, apax | apax first epoch (JIT) s |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for gt in g["training"]:
            at = next((x for x in a["training"] if x["dtype"] == gt["dtype"]), None)
            if at is None:
                continue
            L.append(f"| {gt['dtype']} | {gt['n_structures']} | {gt['structures_per_s']:.0f} "
                     f"| {at['structures_per_s']:.0f} "
                     f"| {ratio(gt['structures_per_s'], at['structures_per_s']):.2f} "
                     f"| {ratio(gt['structures_per_cpu_s'], at['structures_per_cpu_s']):.2f} "
                     f"| {gt['cpu_per_wall']:.2f}, {at['cpu_per_wall']:.2f} | {at['first_epoch_s']:.1f} |")
    else:
        L.append("| dtype | structures | gmnn structures/s |")
        L.append("|---|---:|---:|")
        for gt in g["training"]:
            L.append(f"| {gt['dtype']} | {gt['n_structures']} | {gt['structures_per_s']:.0f} |")
    L.append("")
    L.append("Energy + forces, µs per atom (neighbour list | model; JIT compilation excluded). "
             + ("gmnn / apax < 1 means gmnn is faster:" if a else
                "gmnn / naive < 1 means gmnn is faster than the naive baseline:"))
    L.append("")
    if a:
        L.append("| system | atoms | dtype | gmnn NL | apax NL | gmnn model | apax model | gmnn / apax model "
                 "| gmnn total | apax total | gmnn / apax total | gmnn / apax total (CPU time) "
                 "| model CPU/wall gmnn, apax | apax compile s |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for gt in g["training"]:
            at = next((x for x in a["training"] if x["dtype"] == gt["dtype"]), None)
            if at:
                gu, au = gt["inference_us_per_atom"], at["inference_us_per_atom"]
                L.append(f"| ethanol, batches of 32 | 9 | {gt['dtype']} | (cached) | (cached) | {gu:.1f} "
                         f"| {au:.1f} | {ratio(gu, au):.2f} | | | "
                         f"| {ratio(gt['inference_cpu_us_per_atom'], at['inference_cpu_us_per_atom']):.2f} (model) "
                         f"| {gt['inference_cpu_per_wall']:.2f}, {at['inference_cpu_per_wall']:.2f} "
                         f"| {at['inference_compile_s']:.1f} |")
        for gi in g["inference"]:
            ai = next((x for x in a["inference"] if x["dtype"] == gi["dtype"] and x["n_atoms"] == gi["n_atoms"]), None)
            if ai is None:
                continue
            L.append(f"| diamond | {gi['n_atoms']} | {gi['dtype']} | {gi['neighbor_list_us_per_atom']:.1f} "
                     f"| {ai['neighbor_list_us_per_atom']:.1f} | {gi['model_us_per_atom']:.1f} "
                     f"| {ai['model_us_per_atom']:.1f} "
                     f"| {ratio(gi['model_us_per_atom'], ai['model_us_per_atom']):.2f} | {gi['total_us_per_atom']:.1f} "
                     f"| {ai['total_us_per_atom']:.1f} | {ratio(gi['total_us_per_atom'], ai['total_us_per_atom']):.2f} "
                     f"| {ratio(gi['total_cpu_us_per_atom'], ai['total_cpu_us_per_atom']):.2f} "
                     f"| {gi['cpu_per_wall']:.2f}, {ai['cpu_per_wall']:.2f} | {ai['compile_s']:.1f} |")
    else:
        L.append("| system | atoms | dtype | gmnn NL | gmnn model | naive baseline model | gmnn / naive |")
        L.append("|---|---:|---|---:|---:|---:|---:|")
        for gi in g["inference"]:
            nv = next((x for x in res.get("naive", []) if x["dtype"] == gi["dtype"] and x["n_atoms"] == gi["n_atoms"]), None)
            nm = nv["model_us_per_atom"] if nv else float("nan")
            L.append(f"| diamond | {gi['n_atoms']} | {gi['dtype']} | {gi['neighbor_list_us_per_atom']:.1f} "
                     f"| {gi['model_us_per_atom']:.1f} | {nm:.1f} | {ratio(gi['model_us_per_atom'], nm):.2f} |")
    L.append("")
    if a:
        pk_t, pk_j = res["gmnn"]["peak_matmul"], a["peak_matmul"]
        fmt = lambda pk: ", ".join(f"{d} {v['gflops']:.0f} ({v['gflops_per_cpu_s']:.0f} per CPU second, "
                                   f"CPU/wall {v['cpu_per_wall']:.2f})" for d, v in pk.items())
        L.append("2048² matmul of random matrices on the same core, GFLOP/s: torch " + fmt(pk_t) + "; XLA "
                 + fmt(pk_j) + ".")
        ce = res.get("fma_ceilings")
        if ce and "error" not in ce:
            L.append(f"One-core FP32 FMA ceilings in the same run: AVX2 {ce['avx2_fma_gflops_per_cpu_s']:.0f}"
                     + (f", AVX-512 {ce['avx512_fma_gflops_per_cpu_s']:.0f}" if "avx512_fma_gflops_per_cpu_s" in ce else "")
                     + f" GFLOP/s per CPU second at about {ce['clock_ghz']:.2f} GHz. On AMD, MKL (torch) runs its "
                     "AVX2 kernel, XLA's dot (YNNPACK) an AVX-512 one.")
        L.append("")
    eq = res.get("equivalence")
    if eq:
        L.append(f"Same function: gmnn's float64 parameters loaded into apax give the same 360 features "
                 f"({'one-to-one' if eq['features_matched_one_to_one'] else 'NOT one-to-one'}, "
                 f"{'same' if eq['feature_order_is_same'] else 'different'} order, max relative difference "
                 f"{eq['feature_max_rel_diff']:.1e}) and, on {eq['n_frames']} ethanol frames, energies within "
                 f"{eq['energy_max_abs_diff_eV']:.1e} eV and forces within {eq['force_max_abs_diff_eV_per_A']:.1e} eV/Å "
                 f"(force RMS {eq['force_rms_eV_per_A']:.1f} eV/Å).")
        L.append("")
    if a:
        L.append("Model differences that remain: " + "; ".join(res["model_differences"]) + ".")
    if res.get("notes"):
        L.append("")
        L.extend(f"- {n}" for n in res["notes"])
    if not a:
        L.insert(0, f"**apax was not run: {res.get('apax_status')}.**\n")
    return "\n".join(L) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 32 structures, 1 repeat, 1000 atoms, float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--no-float64", action="store_true")
    p.add_argument("--no-apax", action="store_true", help="skip apax, compare with the naive baseline")
    p.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the idlest)")
    p.add_argument("--venv", default=str(VENV))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "apax_comparison.json"))
    args = p.parse_args()
    if args.quick:
        args.repeats, args.sizes, args.no_float64 = 1, [1000], True
        if args.out == p.get_default("out"):
            args.out = str(Path(tempfile.gettempdir()) / "apax_comparison_quick.json")
    dtypes = ["float32"] if args.no_float64 else ["float32", "float64"]
    t_start = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    cpu = args.cpu if args.cpu is not None else idlest_cpu()
    os.sched_setaffinity(0, {cpu})
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import gmnn
    import train_throughput as tt
    from gmnn.data import read_structures
    tt.best_of = recording_best_of        # every timed part also records its CPU time

    ethanol = read_structures(tt.DATA / "rmd17_ethanol_100.xyz", energy_unit="kcal/mol")
    n_train = BATCH if args.quick else 3 * BATCH          # full batches only (apax drops the rest)
    ethanol = ethanol[:n_train]
    atoms = {n: diamond(n) for n in args.sizes}

    res = {"script": "benchmarks/apax_comparison.py", "quick": args.quick, "cpu": cpu,
           "settings": {"batch_size": BATCH, "n_structures": n_train, "repeats": args.repeats, "cutoff": CUTOFF,
                        "hidden": list(HIDDEN), "n_basis": 7, "n_radial": 5, "r_min": 0.5, "max_L": 3,
                        "n_features": 360, "loss": "1 * (E - E_ref)^2 / N + 4 * mean |F - F_ref|^2 (apax: forces "
                        "weight 4/3 on its sum over components)", "optimizer": "AMSGrad lr 1e-3 (torch.optim.Adam "
                        "amsgrad / optax.amsgrad with apax's per-group chain)", "dtypes": dtypes,
                        "threads": {"torch.set_num_threads": 1, "OMP_NUM_THREADS": "1", "XLA_FLAGS": XLA_FLAGS,
                                    "cpu_affinity": [cpu]}},
           "machine": {"cpu_model": _cpu_model(), "cpu_family_model": _cpu_family_model(),
                       "avx512f": "avx512f" in cpu_flags(), "cores": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version(), "load_before": load_before},
           "versions": {"gmnn": gmnn.__version__, "torch": torch.__version__, "numpy": np.__version__,
                        "gmnn_commit": _git_commit()},
           "model_differences": [
               "apax keeps element-pair coefficients for all 119x119 elements (gathers one (5, 7) block per "
               "edge) where gmnn keeps them for the data set's elements (one matmul for all pairs, then a gather); "
               "same values for the elements present, more parameters in apax",
               "apax pads every structure to the largest one of the data set and vmaps over structures; gmnn "
               "concatenates the graphs without padding (ethanol: all 9 atoms, 72 edges, no padding either way)",
               "apax computes distance vectors in float64 from fractional/Cartesian positions and casts to the "
               "descriptor dtype; gmnn takes cached edge vectors in the model dtype; apax differentiates with "
               "respect to positions, gmnn with respect to edge vectors and scatters to atoms",
               "apax's training step also applies gradient clipping (at 1000) and zero_nans, a linear learning "
               "rate schedule, and separate optimizer groups (same learning rate here)",
               "apax's unit vectors use r + 1e-5 in the denominator; neighbour lists: both vesin (gmnn falls "
               "back to ASE without it)",
               "apax's ASE calculator would build the neighbour list inside jit (jax_md, no cell list) for boxes "
               "wider than 2 r_c; here both codes get a host-built list and the model is timed alone",
           ],
           "notes": []}
    if args.quick:
        res["notes"].append("--quick smoke run: 32 structures, one repeat, 1000 atoms, float32 only")

    # data for the worker: identical structures in eV / Å
    workdir = tempfile.mkdtemp(prefix="apax_comparison_")
    arrays = {"eth_pos": np.stack([s.positions for s in ethanol]), "eth_num": ethanol[0].numbers,
              "eth_energy": np.array([s.energy for s in ethanol]), "eth_forces": np.stack([s.forces for s in ethanol])}
    assert all(np.array_equal(s.numbers, ethanol[0].numbers) for s in ethanol)
    arrays.update(gmnn_reference(ethanol))
    for n, at in atoms.items():
        arrays[f"pos_{n}"], arrays[f"cell_{n}"] = at.positions, at.cell.array
    npz = Path(workdir) / "data.npz"
    np.savez(npz, **arrays)
    task = {"npz": str(npz), "cpu": cpu, "batch": BATCH, "cutoff": CUTOFF, "hidden": list(HIDDEN),
            "force_weight": 4.0, "repeats": args.repeats, "dtypes": dtypes, "sizes": [str(n) for n in args.sizes]}

    py = None
    if args.no_apax:
        res["apax_status"] = "skipped (--no-apax); gmnn is compared with the project's naive baseline instead"
    else:
        py = apax_python(Path(args.venv), log)
        if py is None:
            res["apax_status"] = (f"apax=={APAX_PIN} with jax[cpu]=={JAX_PIN} could not be installed; "
                                  "gmnn is compared with the project's naive baseline instead")
            log(res["apax_status"].upper())
    log(f"pinned to CPU {cpu}; load average {load_before[0]:.2f}")

    apax = None
    if py is not None:
        log("apax: training ...")
        apax_train = run_apax(py, {**task, "part": "training"}, workdir, log, timeout=600)
    log("gmnn: training ...")
    res["fma_ceilings"] = fma_ceilings()
    res["gmnn"] = {"peak_matmul": {dt: torch_peak(getattr(torch, dt)) for dt in dtypes},
                   "training": [gmnn_training(ethanol, dt, args.repeats) for dt in dtypes], "inference": []}
    if py is not None:
        log("apax: inference ...")
        apax_infer = run_apax(py, {**task, "part": "inference"}, workdir, log, timeout=900)
        if apax_train is not None and apax_infer is not None:
            apax = apax_train
            apax["inference"] = apax_infer["inference"]
            apax["subprocess_s"] = {"training": apax_train["subprocess_s"], "inference": apax_infer["subprocess_s"]}
        else:
            res["apax_status"] = ("the apax worker failed (messages on stderr); gmnn is compared with the "
                                  "project's naive baseline instead")
    log("gmnn: inference ...")
    for n in args.sizes:
        for dt in dtypes:
            r = gmnn_inference(n, dt, args.repeats)
            assert r["n_atoms"] == len(atoms[n])
            res["gmnn"]["inference"].append(r)
    if apax is not None:
        res["apax_status"] = "ok"
        res["apax"] = apax
        res["equivalence"] = apax.pop("equivalence", None)
        res["ratios_gmnn_over_apax"] = ratios_over_apax(res["gmnn"], apax, {
            "training_structures_per_s": ("training", "structures_per_s"),
            "ethanol_inference_us_per_atom": ("training", "inference_us_per_atom"),
            "diamond_model_us_per_atom": ("inference", "model_us_per_atom"),
            "diamond_total_us_per_atom": ("inference", "total_us_per_atom")})
        # the same from the CPU time of one repeat: less sensitive to other jobs sharing the core
        res["ratios_gmnn_over_apax_cpu_time"] = ratios_over_apax(res["gmnn"], apax, {
            "training_structures_per_cpu_s": ("training", "structures_per_cpu_s"),
            "ethanol_inference_cpu_us_per_atom": ("training", "inference_cpu_us_per_atom"),
            "diamond_model_cpu_us_per_atom": ("inference", "model_cpu_us_per_atom"),
            "diamond_total_cpu_us_per_atom": ("inference", "total_cpu_us_per_atom")})
    else:
        res["naive"] = []
        for n in args.sizes:
            for dt in dtypes:
                try:
                    res["naive"].append(naive_inference(atoms[n], dt, args.repeats))
                except Exception as e:  # the baseline is a fallback; report, do not fail
                    res["notes"].append(f"naive baseline failed for {n} atoms {dt}: {e}")
    res["machine"]["load_after"] = os.getloadavg()
    res["one_core"] = {"gmnn": one_core_summary(res["gmnn"], thread_affinities())}
    if apax is not None:
        res["one_core"]["apax"] = one_core_summary(apax, apax.get("thread_affinities_at_end"))
    res["wall_s"] = time.perf_counter() - t_start
    text = markdown(res)
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text("# gmnn vs apax (`python benchmarks/apax_comparison.py`)\n\n" + text)
    log(f"wrote {out} and {out.with_suffix('.md')} ({res['wall_s']:.0f} s)")


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_family_model():
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            k = k.strip()
            if k in ("vendor_id", "cpu family", "model", "stepping") and k not in info:
                info[k] = v.strip()
            if line.strip() == "":
                break
    except OSError:
        pass
    return info


def _git_commit():
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


if __name__ == "__main__":
    main()
