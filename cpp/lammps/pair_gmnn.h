// pair_gmnn.h -- LAMMPS pair style for exported gmnn (Gaussian Moment Neural Network) models.
//
//   pair_style gmnn [device auto|cpu|cuda|cuda:N] [atoms_per_pass N] [keep_memory yes|no]
//                   [debug yes|no] [max_force F] [check_masses yes|no]
//                   [uncertainty yes|no] [uncertainty_halt S]
//   pair_coeff * * model.pt C H O      (one element symbol or NULL per atom type)
//
// uncertainty yes (a model file of format 3 with a calibrated uncertainty): every step also
// computes each local atom's force uncertainty sigma_F (eV/Angstrom), which LAMMPS' fix pair
// reads as `uncertainty`:
//   fix u all pair 1 gmnn uncertainty 0         -> f_u per atom (dump, compute reduce, variables)
// Without the keyword, `fix u all pair N gmnn uncertainty 1` computes it on every Nth step only.
// uncertainty_halt S (eV/Angstrom; implies uncertainty yes) stops the run with an error naming
// the step, atom and value when any atom's sigma_F exceeds S. Off (the default), nothing extra
// is computed.
//
// Needs `units metal`. Works with newton_pair on and off, any number of MPI ranks, periodic or
// not, orthogonal or triclinic boxes; global and per-atom energy and virial.
// Refuses inputs that would silently give a wrong energy: a per-type mass more than 5 % from the
// mapped element's standard mass (a mistaken element order; `check_masses no` for isotopes), and
// bonded atoms whose 1-2/1-3/1-4 pairs special_bonds would drop or scale (needs lj/coul 1 1 1).
// GMNN_PROFILE=N in the environment: every N steps rank 0 logs the time of each stage of compute()
// (benchmarks/profile_step.py).

#ifndef LMP_PAIR_GMNN_H
#define LMP_PAIR_GMNN_H

#include "pair.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gmnn {
class EdgeBlock;
class Model;
struct EvalResult;
}  // namespace gmnn

namespace LAMMPS_NS {

class PairGMNN : public Pair {
 public:
  PairGMNN(class LAMMPS *);
  ~PairGMNN() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  double memory_usage() override;
  // for fix pair: extract_peratom("uncertainty") (sigma_F of the local atoms, this step) and
  // extract("uncertainty_flag") (fix pair's trigger: compute it this step)
  void *extract(const char *, int &) override;
  void *extract_peratom(const char *, int &) override;

 protected:
  // compute() in steps, one pass each: map_atoms, then for each block of atoms_per_pass local
  // atoms build_edges .. tally_forces_and_virials, then (newton_pair off) add_ghost_contributions
  void map_atoms();
  void build_edges(int first, int last);
  void log_edges(bool with_uncertainty);
  void evaluate_model(bool with_uncertainty);
  void tally_energies();
  void tally_forces_and_virials();
  void clear_ghost_buffer();
  void add_ghost_contributions();
  void store_uncertainty();
  void check_uncertainty_halt();
  void check_uncertainty_request();

  // GMNN_PROFILE=N in the environment: every N steps, rank 0 logs where compute() spent its time
  // (per stage, µs per atom and step); benchmarks/profile_step.py reads it
  void profile_lap(int stage);
  void profile_step_done();

  void allocate();
  void load_model(const std::string &path);
  void check_result(const gmnn::EvalResult &res);
  void require_uncertainty();
  void check_masses();
  void check_special_bonds();

  std::string device_request_ = "auto";
  std::unique_ptr<gmnn::Model> model_;
  std::unique_ptr<gmnn::EdgeBlock> block_;    // the model's input for one block of local atoms
  std::unique_ptr<gmnn::EvalResult> result_;  // its output
  std::vector<int> type_species_;  // [ntypes + 1]; model element index per type, -1 for NULL
  std::vector<std::string> type_elements_;
  double cutoff_ = 0.0;
  int debug_ = 0;
  bigint atoms_per_pass_;     // local atoms per block, i.e. per forward/backward pass (bounds
                              // memory); 0 = all; default gmnn::kDefaultAtomsPerPass (gmnn_model.h)
  double max_force_ = 0.0;    // eV/A: stop if a pair contribution exceeds it; 0 = no cap
  bool keep_memory_ = true;   // tune glibc malloc to keep freed memory between steps
  bool check_masses_ = true;  // per-type masses must match the mapped elements
  bool special_check_due_ = false;  // as a pair hybrid sub-style: check special_bonds in compute()
  bool uncertainty_ = false;        // compute sigma_F every step (uncertainty yes)
  double uncertainty_halt_ = 0.0;   // eV/A: stop if an atom's sigma_F exceeds it; 0 = never
  int uncertainty_trigger_ = 0;     // set by fix pair (flag 1) on the steps it wants sigma_F
  bool trigger_requested_ = false;  // a fix pair holds uncertainty_trigger_
  bool peratom_requested_ = false;  // a fix pair reads extract_peratom("uncertainty")
  static bool malloc_tuned_;
  int reported_threads_ = 0;

  // buffers reused between steps; nothing holds the whole step's edges
  std::vector<int32_t> species_;    // [nall] model element index of every atom (0 for NULL types)
  std::vector<char> in_list_;       // [nlocal] 1 if the atom has a row in the neighbour list
  std::vector<int32_t> edge_i_, edge_j_;  // the block's edges i -> j in LAMMPS' numbering
  std::vector<double> accum_;  // newton off: per-atom forces (+ virial) incl. ghosts
  std::vector<double> atom_uncertainty_;  // [max(nlocal, 1)] sigma_F of the local atoms
  int accum_stride_ = 3;

  int profile_every_ = 0, profile_steps_ = 0;
  double profile_atoms_ = 0.0;
  std::vector<double> profile_seconds_;  // per stage (pair_gmnn.cpp, ProfileStage)
  std::chrono::steady_clock::time_point profile_t0_;
};

}  // namespace LAMMPS_NS

#endif
