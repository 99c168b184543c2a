// pair_gmnn.cpp -- LAMMPS pair style gmnn (see pair_gmnn.h for the input syntax).
//
// Each step, block by block of atoms_per_pass local atoms: build the block's directed edges (i in
// the block, j local or ghost, |r_ij| < cutoff) from the full neighbour list, evaluate the
// TorchScript model for the atomic energies of the block's atoms and dE/d(r_ij) (one call of the
// file's forward_gradients, or forward and one backward pass for files exported before it; see
// gmnn::Model::evaluate), and assemble (gmnn::tally_edge_gradients)
//   F_i += g_ij, F_j -= g_ij,   W_ab -= r_ij,a g_ij,b   (half to atom i, half to atom j per atom).
// Only one block's edges exist at a time: memory grows with the atoms, not with their edges.
// Forces on ghosts go back to their owners by LAMMPS' own reverse communication with
// newton_pair on, and by this style's reverse communication with newton_pair off.
// With uncertainty yes, each block's pass also returns the atoms' force uncertainty sigma_F
// (the model's forward_uncertainty), kept per local atom for fix pair and uncertainty_halt.

#include "pair_gmnn.h"

#include "gmnn_edge_block.h"
#include "gmnn_elements.h"
#include "gmnn_geometry.h"
#include "gmnn_model.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

bool PairGMNN::malloc_tuned_ = false;

namespace {
// GMNN_PROFILE stages, in compute() order
enum ProfileStage {
  kMapAtoms, kBuildEdges, kModelForward, kModelBackward, kModelOther, kEnergies, kForces, kGhosts,
  kNumStages
};
const char *const kStageNames[kNumStages] = {
    "map atoms", "build edges", "model forward", "model backward",
    "model other (tensors in and out)", "energies", "forces and virials", "ghost forces (newton off)"};
}  // namespace

PairGMNN::PairGMNN(LAMMPS *lmp) :
    Pair(lmp), block_(new gmnn::EdgeBlock), result_(new gmnn::EvalResult),
    atoms_per_pass_(gmnn::kDefaultAtomsPerPass)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial comes from the edges, exact with newton on or off
  centroidstressflag = CENTROID_NOTAVAIL;
  // 3 force + 6 per-atom virial components; also used with newton_pair off
  comm_reverse = 9;
  comm_reverse_off = 9;
  if (const char *env = std::getenv("GMNN_PROFILE")) profile_every_ = std::max(0, std::atoi(env));
  profile_seconds_.assign(kNumStages, 0.0);
}

PairGMNN::~PairGMNN()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairGMNN::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
  type_species_.assign(n + 1, -1);
  type_elements_.assign(n + 1, "NULL");
}

/* ----------------------------------------------------------------------
   Stop instead of writing garbage: NaN/inf energies or forces always stop the run; with
   max_force F, so does any pair contribution |dE/dr_ij| > F eV/Å (an exploding structure).
------------------------------------------------------------------------- */

void PairGMNN::check_result(const gmnn::EvalResult &res)
{
  const int64_t n_edges = block_->n_edges();
  if (!std::isfinite(res.energy))
    error->one(FLERR, "pair gmnn: step {}: energy is {} (non-finite)", update->ntimestep, res.energy);
  const double cap2 = max_force_ * max_force_;
  const double *g = res.edge_gradients.data();
  for (int64_t e = 0; e < n_edges; e++) {
    const double g2 = g[3 * e] * g[3 * e] + g[3 * e + 1] * g[3 * e + 1] + g[3 * e + 2] * g[3 * e + 2];
    if (!std::isfinite(g2))
      error->one(FLERR, "pair gmnn: step {}: non-finite force between atoms {} and {}", update->ntimestep,
                 atom->tag[edge_i_[e]], atom->tag[edge_j_[e]]);
    if (max_force_ > 0.0 && g2 > cap2)
      error->one(FLERR,
                 "pair gmnn: step {}: force {:.4g} eV/Angstrom between atoms {} and {} exceeds max_force {:.4g} "
                 "(exploding structure?)",
                 update->ntimestep, std::sqrt(g2), atom->tag[edge_i_[e]], atom->tag[edge_j_[e]], max_force_);
  }
}

/* ----------------------------------------------------------------------
   pair_style gmnn [device auto|cpu|cuda|cuda:N] [atoms_per_pass N] [keep_memory yes|no]
                   [debug yes|no] [max_force F] [check_masses yes|no]
                   [uncertainty yes|no] [uncertainty_halt S]
------------------------------------------------------------------------- */

void PairGMNN::settings(int narg, char **arg)
{
  bool uncertainty_no = false, halt_given = false;
  int iarg = 0;
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style gmnn: keyword '{}' needs a value", key);
    const std::string value = arg[iarg + 1];
    if (key == "device") {
      if (value != "auto" && value != "cpu" && value != "cuda" && !utils::strmatch(value, "^cuda:\\d+$"))
        error->all(FLERR, "pair_style gmnn: device must be auto, cpu, cuda or cuda:N, got '{}'", value);
      device_request_ = value;
    } else if (key == "atoms_per_pass") {
      atoms_per_pass_ = utils::bnumeric(FLERR, value, false, lmp);
      if (atoms_per_pass_ < 0) error->all(FLERR, "pair_style gmnn: atoms_per_pass must be >= 0");
    } else if (key == "keep_memory") {
      keep_memory_ = utils::logical(FLERR, value, false, lmp);
    } else if (key == "debug") {
      debug_ = utils::logical(FLERR, value, false, lmp);
    } else if (key == "max_force") {
      max_force_ = utils::numeric(FLERR, value, false, lmp);
      if (max_force_ < 0.0) error->all(FLERR, "pair_style gmnn: max_force must be >= 0 (0 = no cap)");
    } else if (key == "check_masses") {
      check_masses_ = utils::logical(FLERR, value, false, lmp);
    } else if (key == "uncertainty") {
      uncertainty_ = utils::logical(FLERR, value, false, lmp);
      uncertainty_no = !uncertainty_;
      if (uncertainty_no) uncertainty_halt_ = 0.0;
    } else if (key == "uncertainty_halt") {
      uncertainty_halt_ = utils::numeric(FLERR, value, false, lmp);
      if (!(uncertainty_halt_ > 0.0))
        error->all(FLERR, "pair_style gmnn: uncertainty_halt must be > 0 (eV/Angstrom), got {}", value);
      halt_given = uncertainty_ = true;
    } else {
      error->all(FLERR,
                 "pair_style gmnn: unknown keyword '{}' (expected device, atoms_per_pass, keep_memory, debug, "
                 "max_force, check_masses, uncertainty or uncertainty_halt)",
                 key);
    }
    iarg += 2;
  }
  if (halt_given && uncertainty_no)
    error->all(FLERR, "pair_style gmnn: uncertainty_halt needs the uncertainty (it implies uncertainty yes); "
               "drop 'uncertainty no'");
  // pair_style again after pair_coeff keeps the model
  if (uncertainty_ && model_) require_uncertainty();
}

// The model must have a calibrated uncertainty (gmnn::Model::require_uncertainty's message).
void PairGMNN::require_uncertainty()
{
  try {
    model_->require_uncertainty();
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style gmnn uncertainty: {}", e.what());
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt El1 El2 ... (one per atom type; NULL = not handled by gmnn)
------------------------------------------------------------------------- */

void PairGMNN::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for gmnn must be: pair_coeff * * <model file> <element per atom type>");
  const int nelem = narg - 3;
  if (nelem != ntypes)
    error->all(FLERR,
               "pair_coeff gmnn: {} atom type(s) need {} element symbol(s) (or NULL) after the "
               "model file, got {}",
               ntypes, ntypes, nelem);

  load_model(arg[2]);
  if (uncertainty_) require_uncertainty();

  std::string known;
  for (int z : model_->atomic_numbers()) known += " " + gmnn::chemical_symbol(z);

  for (int t = 1; t <= ntypes; t++) {
    const std::string sym = arg[2 + t];
    type_elements_[t] = sym;
    if (sym == "NULL") {
      type_species_[t] = -1;
      continue;
    }
    const int z = gmnn::atomic_number(sym);
    if (z < 0) error->all(FLERR, "pair_coeff gmnn: unknown element symbol '{}' for atom type {}", sym, t);
    const int s = model_->species_index(z);
    if (s < 0)
      error->all(FLERR, "pair_coeff gmnn: element {} (atom type {}) is not in model '{}'; it has:{}",
                 sym, t, model_->path(), known);
    type_species_[t] = s;
  }

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (type_species_[i] >= 0 && type_species_[j] >= 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff gmnn: all atom types are NULL");

  if (comm->me == 0) {
    std::string mapping;
    for (int t = 1; t <= ntypes; t++) mapping += fmt::format(" {}={}", t, type_elements_[t]);
    utils::logmesg(lmp, "pair gmnn: atom types:{}\n", mapping);
  }
}

void PairGMNN::load_model(const std::string &path)
{
  // every rank reads the file; if any rank fails, all stop with that rank's message
  std::string message;
  try {
    model_ = std::make_unique<gmnn::Model>(path, device_request_, comm->me);
  } catch (const std::exception &e) {
    model_.reset();
    message = e.what();
  }
  int failed = message.empty() ? 0 : 1, n_failed = 0;
  MPI_Allreduce(&failed, &n_failed, 1, MPI_INT, MPI_SUM, world);
  if (n_failed == comm->nprocs) error->all(FLERR, "pair_coeff gmnn: {}", message);
  if (n_failed > 0) {
    if (failed) error->one(FLERR, "pair_coeff gmnn: {}", message);
    error->all(FLERR, "pair_coeff gmnn: could not load model '{}' on {} MPI rank(s)", path, n_failed);
  }
  cutoff_ = model_->cutoff();

  if (comm->me == 0) {
    std::string elems;
    for (int z : model_->atomic_numbers()) elems += " " + gmnn::chemical_symbol(z);
    utils::logmesg(lmp,
                   "pair gmnn: model {} (format {}, gmnn {}), cutoff {} A, dtype {}, device {}, "
                   "elements:{}, atoms per pass {}, {}, forces by {}\n",
                   path, model_->format_version(), model_->gmnn_version(), cutoff_, model_->dtype(),
                   model_->device(), elems, atoms_per_pass_ > 0 ? std::to_string(atoms_per_pass_) : "all",
                   model_->has_uncertainty() ? "calibrated uncertainty" : "no uncertainty",
                   model_->uses_fused_gradients() ? "forward_gradients" : "autograd");
  }
}

void PairGMNN::init_style()
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style gmnn requires 'units metal' (eV, Angstrom); this input uses 'units {}'",
               update->unit_style);
  if (!model_) error->all(FLERR, "pair_style gmnn: no model loaded; use pair_coeff * * <model file> ...");
  if (atom->ntypes + 1 != static_cast<int>(type_species_.size()))
    error->all(FLERR, "pair_style gmnn: the number of atom types changed after pair_coeff");

  if (check_masses_) check_masses();
  check_uncertainty_request();
  // As a sub-style of pair hybrid, `pair_modify pair gmnn special ...` factors are in force only
  // while hybrid calls compute(): check there.
  if (force->pair == this)
    check_special_bonds();
  else
    special_check_due_ = true;

  neighbor->add_request(this, NeighConst::REQ_FULL);

  // libtorch allocates and frees its (large) CPU tensors every step; glibc serves blocks above
  // its mmap threshold with fresh mmap/munmap calls and trims the heap top, so every step
  // page-faults all of that memory in again (2-3x slower for thousands of atoms). Keep freed
  // memory in the heap instead: the process keeps its peak memory between steps.
#if defined(__GLIBC__)
  if (keep_memory_ && !malloc_tuned_) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    malloc_tuned_ = true;
  }
#endif

  const int nthreads = gmnn::configure_torch_threads(1);
  if (comm->me == 0 && nthreads != reported_threads_)
    utils::logmesg(lmp, "pair gmnn: {} torch thread(s) per MPI rank (set OMP_NUM_THREADS to change)\n",
                   nthreads);
  reported_threads_ = nthreads;
}

/* ----------------------------------------------------------------------
   A type mapped to an element whose standard atomic mass differs from the type's mass by more
   than 5 % is almost always a pair_coeff element list in the wrong order (`H C O` for types
   C H O runs, with an energy thousands of eV off). Masses may be set after pair_coeff, so this
   runs at init. Isotopes (deuterium: twice the mass of H) need `check_masses no`. Per-atom
   masses (atom->rmass, e.g. atom_style sphere) are not checked.
------------------------------------------------------------------------- */

void PairGMNN::check_masses()
{
  if (!atom->mass || !atom->mass_setflag) return;
  constexpr double tolerance = 0.05;
  std::string mismatches;
  for (int t = 1; t <= atom->ntypes; t++) {
    if (type_species_[t] < 0 || !atom->mass_setflag[t]) continue;
    const double expected = gmnn::standard_atomic_mass(gmnn::atomic_number(type_elements_[t]));
    const double mass = atom->mass[t];
    if (expected > 0.0 && std::fabs(mass - expected) > tolerance * expected)
      mismatches += fmt::format("{}atom type {} has mass {:g} but pair_coeff maps it to {} (standard atomic mass {:g})",
                                mismatches.empty() ? "" : "; ", t, mass, type_elements_[t], expected);
  }
  if (!mismatches.empty())
    error->all(FLERR,
               "pair_style gmnn: {}. Check the element order in pair_coeff (one element per atom type, "
               "in type order); for isotopes such as deuterium use 'pair_style gmnn check_masses no'",
               mismatches);
}

/* ----------------------------------------------------------------------
   LAMMPS drops bonded 1-2/1-3/1-4 pairs from the neighbour list when their special_bonds factors
   are 0 (the default), and flags them when between 0 and 1. The model needs every pair within
   the cutoff and cannot scale a many-body energy: with gmnn atoms that have bonded neighbours,
   only factors of 1 are right (the special bits in the list are masked in compute()). Checked
   at each init; bonds created during a run (fix bond/create) are not re-checked.
------------------------------------------------------------------------- */

void PairGMNN::check_special_bonds()
{
  const double *lj = force->special_lj, *coul = force->special_coul;
  bool all_one = true;
  for (int k = 1; k <= 3; k++) all_one = all_one && lj[k] == 1.0 && coul[k] == 1.0;
  if (all_one || atom->molecular == Atom::ATOMIC) return;

  // local atoms of gmnn types with special neighbours; with molecule templates every such atom
  // in a molecule counts (the template's bonds are not visible from here)
  bigint n_local = 0, n_bonded = 0;
  const int *type = atom->type;
  for (int i = 0; i < atom->nlocal; i++) {
    if (type_species_[type[i]] < 0) continue;
    if (atom->molecular == Atom::MOLECULAR ? (atom->nspecial && atom->nspecial[i][2] > 0)
                                           : (atom->molindex && atom->molindex[i] >= 0))
      n_local++;
  }
  MPI_Allreduce(&n_local, &n_bonded, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (n_bonded == 0) return;

  const bool sub_style = force->pair != this;
  error->all(FLERR,
             "pair_style gmnn: {} atom(s) of gmnn types have bonded (1-2, 1-3 or 1-4) neighbours, and "
             "special_bonds lj {:g} {:g} {:g} coul {:g} {:g} {:g} drops or scales those pairs, but the model "
             "needs every pair unscaled: use 'special_bonds lj/coul 1.0 1.0 1.0' (bond styles still add "
             "their own terms){}",
             n_bonded, lj[1], lj[2], lj[3], coul[1], coul[2], coul[3],
             sub_style ? ", or, to keep other factors for the other pair styles, 'pair_modify pair gmnn "
                         "special lj/coul 1.0 1.0 1.0' (LAMMPS allows this where the special_bonds "
                         "factors are neither 0 nor 1)"
                       : "");
}

/* ----------------------------------------------------------------------
   Who wants sigma_F: the keyword, or a fix pair (per atom with flag 0, or as a trigger with flag
   1). The model must then have it; a fix pair reading `uncertainty` with neither would stop at
   its first step with LAMMPS' bare "cannot extract uncertainty", so say what to add instead.
------------------------------------------------------------------------- */

void PairGMNN::check_uncertainty_request()
{
  if (modify->get_fix_by_style("^pair$").empty()) trigger_requested_ = peratom_requested_ = false;  // unfix
  if (uncertainty_ || trigger_requested_) require_uncertainty();
  if (peratom_requested_ && !uncertainty_ && !trigger_requested_)
    error->all(FLERR,
               "pair_style gmnn: fix pair reads 'uncertainty', which pair gmnn computes only with "
               "'pair_style gmnn uncertainty yes' (every step) or with the fix pair flag 1 "
               "('fix ID group pair N gmnn uncertainty 1': every Nth step)");
}

void *PairGMNN::extract(const char *name, int &dim)
{
  if (strcmp(name, "uncertainty_flag") != 0) return nullptr;
  dim = 0;
  trigger_requested_ = true;
  return &uncertainty_trigger_;
}

// sigma_F of the local atoms at the last compute(); ghosts have none (fix pair reads local atoms)
void *PairGMNN::extract_peratom(const char *name, int &ncol)
{
  if (strcmp(name, "uncertainty") != 0) return nullptr;
  ncol = 0;
  peratom_requested_ = true;
  return atom_uncertainty_.empty() ? nullptr : atom_uncertainty_.data();
}

double PairGMNN::init_one(int i, int j)
{
  if (setflag[i][j] == 0 && !(type_species_[i] >= 0 && type_species_[j] >= 0))
    error->all(FLERR, "pair_style gmnn: pair coefficients for types {} {} are not set", i, j);
  return cutoff_;
}

/* ----------------------------------------------------------------------
   One step, one pass per helper (as LAMMPS' pair_snap): atoms -> for each block of local atoms
   (edges -> model -> energies -> forces and virials) -> ghost forces back to their owners.
------------------------------------------------------------------------- */

void PairGMNN::compute(int eflag, int vflag)
{
  if (special_check_due_) {
    special_check_due_ = false;
    check_special_bonds();
  }
  ev_init(eflag, vflag);
  if (profile_every_) profile_t0_ = std::chrono::steady_clock::now();

  map_atoms();
  const bool newton = force->newton_pair != 0;
  if (!newton) clear_ghost_buffer();
  const bigint nlocal = atom->nlocal;
  // sigma_F this step: uncertainty yes, or fix pair's trigger; otherwise nothing extra is done.
  // At least one entry: fix pair takes a null pointer for "cannot extract", also on empty ranks.
  const bool with_uncertainty = uncertainty_ || uncertainty_trigger_;
  if (with_uncertainty) atom_uncertainty_.assign(std::max<bigint>(nlocal, 1), 0.0);
  profile_lap(kMapAtoms);
  const bigint per_pass = atoms_per_pass_ > 0 ? atoms_per_pass_ : nlocal;
  for (bigint first = 0; first < nlocal; first += per_pass) {
    build_edges(static_cast<int>(first), static_cast<int>(std::min(first + per_pass, nlocal)));
    if (debug_) log_edges(with_uncertainty);
    profile_lap(kBuildEdges);
    evaluate_model(with_uncertainty);
    if (with_uncertainty) store_uncertainty();
    profile_lap(kModelOther);
    if (eflag_either) tally_energies();
    profile_lap(kEnergies);
    tally_forces_and_virials();
    profile_lap(kForces);
  }
  if (!newton) add_ghost_contributions();
  profile_lap(kGhosts);
  if (profile_every_) profile_step_done();
  if (uncertainty_halt_ > 0.0) check_uncertainty_halt();
}

// Adds the time since the last lap to `stage`; the model's lap is split into its forward,
// backward and the rest (gmnn::EvalResult's timers).
void PairGMNN::profile_lap(int stage)
{
  if (!profile_every_) return;
  const auto now = std::chrono::steady_clock::now();
  double seconds = std::chrono::duration<double>(now - profile_t0_).count();
  profile_t0_ = now;
  if (stage == kModelOther) {
    profile_seconds_[kModelForward] += result_->forward_seconds;
    profile_seconds_[kModelBackward] += result_->backward_seconds;
    seconds -= result_->forward_seconds + result_->backward_seconds;
  }
  profile_seconds_[stage] += seconds;
}

void PairGMNN::profile_step_done()
{
  profile_atoms_ += atom->nlocal;
  if (++profile_steps_ < profile_every_) return;
  if (comm->me == 0 && profile_atoms_ > 0) {
    double total = 0.0;
    for (double s : profile_seconds_) total += s;
    utils::logmesg(lmp, "pair gmnn profile: {} steps, {:.0f} atoms on rank 0, {:.3f} us/atom/step in pair gmnn\n",
                   profile_steps_, profile_atoms_ / profile_steps_, total / profile_atoms_ * 1e6);
    for (int k = 0; k < kNumStages; k++)
      utils::logmesg(lmp, "pair gmnn profile: {}: {:.3f} us/atom/step ({:.1f} %)\n", kStageNames[k],
                     profile_seconds_[k] / profile_atoms_ * 1e6, total > 0 ? 100.0 * profile_seconds_[k] / total : 0.0);
  }
  profile_seconds_.assign(kNumStages, 0.0);
  profile_steps_ = 0;
  profile_atoms_ = 0.0;
}

/* ----------------------------------------------------------------------
   species_: the model element index of every atom (local and ghost); in_list_: whether a local
   atom has a row in the neighbour list (blocks are ranges of local atoms, not of list rows).
------------------------------------------------------------------------- */

void PairGMNN::map_atoms()
{
  const int *type = atom->type;
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  species_.resize(nall);
  for (int a = 0; a < nall; a++) {
    const int s = type_species_[type[a]];
    species_[a] = s >= 0 ? s : 0;    // NULL-type atoms are in no edge and their energy is dropped
  }
  in_list_.assign(nlocal, 0);
  for (int ii = 0; ii < list->inum; ii++) in_list_[list->ilist[ii]] = 1;
}

/* ----------------------------------------------------------------------
   The model's input for the local atoms first .. last-1 (block_): the directed edges i -> j
   (x_j - x_i) for i in the block and |x_j - x_i| < cutoff, from the full neighbour list, in the
   block's numbering, and the same edges in LAMMPS' numbering (edge_i_, edge_j_). Atoms of NULL
   types are in no edge.
------------------------------------------------------------------------- */

void PairGMNN::build_edges(int first, int last)
{
  double **x = atom->x;
  const int *type = atom->type;
  const int *species_of = type_species_.data();
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  block_->begin(first, last, atom->nlocal + atom->nghost, species_.data() + first);
  edge_i_.clear();
  edge_j_.clear();
  const double cut2 = cutoff_ * cutoff_;
  for (int i = first; i < last; i++) {
    if (!in_list_[i] || species_of[type[i]] < 0) continue;
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (species_of[type[j]] < 0) continue;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq >= cut2) continue;
      // the unit vector r/|r| of the moments is undefined at r = 0: stop instead of making NaN
      if (rsq < 1e-20)
        error->one(FLERR, "pair gmnn: atoms {} and {} are at the same position (coincident atoms)",
                   atom->tag[i], atom->tag[j]);
      block_->add_edge(i, j, species_[j], dx, dy, dz);
      edge_i_.push_back(i);
      edge_j_.push_back(j);
    }
  }
}

// debug yes: the block's edges, and whether this pass computes sigma_F (the tests check that
// only the steps that ask for it do)
void PairGMNN::log_edges(bool with_uncertainty)
{
  const int64_t n_edges = block_->n_edges();
  const double *r = block_->edge_vectors();
  utils::logmesg(lmp, "pair gmnn debug: rank {} step {}: {} local, {} ghost atoms, {} edges of local atoms {}-{}{}\n",
                 comm->me, update->ntimestep, atom->nlocal, atom->nghost, n_edges, block_->first(),
                 block_->first() + block_->n_centers() - 1, with_uncertainty ? ", with uncertainty" : "");
  for (int64_t e = 0; e < n_edges; e++)
    utils::logmesg(lmp, "  edge {} -> {} (tags {} {}) {:.10f} {:.10f} {:.10f}\n", edge_i_[e], edge_j_[e],
                   atom->tag[edge_i_[e]], atom->tag[edge_j_[e]], r[3 * e], r[3 * e + 1], r[3 * e + 2]);
}

/* ----------------------------------------------------------------------
   The atomic energies of the block's atoms and dE/d(edge vectors), into result_; checked.
------------------------------------------------------------------------- */

void PairGMNN::evaluate_model(bool with_uncertainty)
{
  try {
    model_->evaluate_block(*block_, true, *result_, with_uncertainty);
  } catch (const std::exception &e) {
    error->one(FLERR, "pair gmnn: {}", e.what());
  }
  check_result(*result_);
}

void PairGMNN::tally_energies()
{
  const int *type = atom->type;
  const double *energy = result_->atomic_energies.data();
  const int first = static_cast<int>(block_->first()), m = static_cast<int>(block_->n_centers());
  for (int k = 0; k < m; k++) {
    const int i = first + k;
    if (type_species_[type[i]] < 0) continue;
    if (eflag_global) eng_vdwl += energy[k];
    if (eflag_atom) eatom[i] += energy[k];
  }
}

// The block's sigma_F into atom_uncertainty_ (0 for atoms of NULL types, which gmnn ignores).
void PairGMNN::store_uncertainty()
{
  const int *type = atom->type;
  const double *sigma = result_->atomic_uncertainty.data();
  const int first = static_cast<int>(block_->first()), m = static_cast<int>(block_->n_centers());
  for (int k = 0; k < m; k++) {
    const int i = first + k;
    atom_uncertainty_[i] = type_species_[type[i]] >= 0 ? sigma[k] : 0.0;
  }
}

/* ----------------------------------------------------------------------
   uncertainty_halt S: stop when the largest sigma_F of all atoms exceeds S. Every rank learns
   the largest value and its rank (MPI_MAXLOC), the owner tells the atom's tag and type, and all
   stop together with the same message. A NaN counts as infinite.
------------------------------------------------------------------------- */

void PairGMNN::check_uncertainty_halt()
{
  struct {
    double value;
    int rank;
  } mine{-1.0, comm->me}, worst{};
  int where = -1;
  for (int i = 0; i < atom->nlocal; i++) {
    const double u = std::isnan(atom_uncertainty_[i]) ? std::numeric_limits<double>::infinity()
                                                      : atom_uncertainty_[i];
    if (u > mine.value) {
      mine.value = u;
      where = i;
    }
  }
  MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE_INT, MPI_MAXLOC, world);
  if (!(worst.value > uncertainty_halt_)) return;
  tagint tag = 0;
  int type = 0;
  if (comm->me == worst.rank) {
    tag = atom->tag[where];
    type = atom->type[where];
  }
  MPI_Bcast(&tag, 1, MPI_LMP_TAGINT, worst.rank, world);
  MPI_Bcast(&type, 1, MPI_INT, worst.rank, world);
  error->all(FLERR,
             "pair gmnn: step {}: force uncertainty {:.6g} eV/Angstrom of atom {} ({}, type {}) exceeds "
             "uncertainty_halt {:.6g} (the model is extrapolating)",
             update->ntimestep, worst.value, tag, type_elements_[type], type, uncertainty_halt_);
}

/* ----------------------------------------------------------------------
   Forces and virials from the block's edge gradients (gmnn::tally_edge_gradients). With
   newton_pair on straight into f and vatom, ghosts included, which LAMMPS sums back to their
   owners; with newton_pair off into accum_, which this style reverse-communicates itself.
------------------------------------------------------------------------- */

void PairGMNN::tally_forces_and_virials()
{
  const bool per_atom_virial = vflag_atom != 0;
  gmnn::EdgeTally tally;
  if (vflag_global) tally.virial = virial;
  if (force->newton_pair) {
    tally.forces = &atom->f[0][0];
    if (per_atom_virial) tally.atom_virial = &vatom[0][0];
  } else {
    tally.forces = accum_.data();
    tally.force_stride = accum_stride_;
    if (per_atom_virial) {
      tally.atom_virial = accum_.data() + 3;
      tally.atom_virial_stride = accum_stride_;
    }
  }
  gmnn::tally_edge_gradients(block_->edge_vectors(), result_->edge_gradients.data(), edge_i_.data(),
                             edge_j_.data(), block_->n_edges(), tally);
}

// newton_pair off: per atom, local and ghost, 3 force [+ 6 virial] components
void PairGMNN::clear_ghost_buffer()
{
  accum_stride_ = vflag_atom ? 9 : 3;
  accum_.assign(static_cast<size_t>(atom->nlocal + atom->nghost) * accum_stride_, 0.0);
}

// newton_pair off: sums accum_ of the ghosts into their owners (pack/unpack_reverse_comm), then
// adds it to f and vatom of the local atoms.
void PairGMNN::add_ghost_contributions()
{
  comm->reverse_comm(this);
  double **f = atom->f;
  const bool per_atom_virial = accum_stride_ == 9;
  for (int i = 0; i < atom->nlocal; i++) {
    const double *ai = &accum_[static_cast<size_t>(i) * accum_stride_];
    f[i][0] += ai[0];
    f[i][1] += ai[1];
    f[i][2] += ai[2];
    if (per_atom_virial)
      for (int k = 0; k < 6; k++) vatom[i][k] += ai[3 + k];
  }
}

/* ---------------------------------------------------------------------- */

int PairGMNN::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  const int last = first + n;
  for (int i = first; i < last; i++) {
    const double *a = &accum_[static_cast<size_t>(i) * accum_stride_];
    for (int k = 0; k < accum_stride_; k++) buf[m++] = a[k];
  }
  return m;
}

void PairGMNN::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  for (int i = 0; i < n; i++) {
    double *a = &accum_[static_cast<size_t>(list[i]) * accum_stride_];
    for (int k = 0; k < accum_stride_; k++) a[k] += buf[m++];
  }
}

double PairGMNN::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += block_->memory_bytes() + sizeof(double) * accum_.capacity();
  bytes += sizeof(int32_t) * (species_.capacity() + edge_i_.capacity() + edge_j_.capacity()) + in_list_.capacity();
  bytes += sizeof(double) * (result_->atomic_energies.capacity() + result_->edge_gradients.capacity() +
                             result_->atomic_uncertainty.capacity() + atom_uncertainty_.capacity());
  return bytes;
}
