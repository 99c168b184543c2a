// gmnn_model.h -- load an exported gmnn TorchScript model and evaluate it on an edge list.
//
// The interface contract is docs/model_file.md. This header does not include torch, so the
// LAMMPS pair style and the Python bindings compile quickly; only gmnn_model.cpp sees libtorch.
// Forces and virials from the edge gradients: gmnn_geometry.h; element table: gmnn_elements.h.

#ifndef GMNN_MODEL_H
#define GMNN_MODEL_H

#include "gmnn_edge_block.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gmnn {

// The model-file format version gmnn-export writes, and the oldest this build still reads
// (docs/model_file.md). 3: the module also has forward_uncertainty, and the metadata key
// gmnn/uncertainty says whether it is calibrated; 2: forward returns float64 atomic energies in
// any model dtype; 1: in the model dtype. Model::evaluate converts all to float64.
constexpr int kFormatVersion = 3;
constexpr int kOldestFormatVersion = 1;

// Default number of atoms (centres) per forward/backward pass, for pair_style gmnn
// (atoms_per_pass) and gmnn._native (Model.atoms_per_pass). The Python calculator has the same
// default: python/gmnn/calculator.py, ATOMS_PER_PASS.
constexpr int64_t kDefaultAtomsPerPass = 2048;

// Output of one model evaluation.
struct EvalResult {
  double energy = 0.0;                  // sum of the atomic energies, accumulated in float64
  std::vector<double> atomic_energies;  // [n_centers]
  std::vector<double> edge_gradients;   // [3 * n_edges], g_e = dE / d(edge_vectors[e])
  // [n_centers] per-atom force uncertainty sigma_F, eV/Angstrom, when the evaluation asked for
  // it (with_uncertainty); empty otherwise
  std::vector<double> atomic_uncertainty;
  // wall time of the module's forward and of the backward pass, seconds, summed over the passes
  // (pair_style gmnn's GMNN_PROFILE; on CUDA the forward is asynchronous and partly counted in
  // the copy of the energies that follows it). The fused path (Model::uses_fused_gradients)
  // counts its one call, forward and analytic backward, as forward.
  double forward_seconds = 0.0, backward_seconds = 0.0;
};

class Model {
 public:
  // Loads and validates the model file; throws std::runtime_error with a message that names
  // the file and the problem. `device` is "auto", "cpu", "cuda" or "cuda:N" ("auto" picks CUDA
  // when torch has it and a GPU is visible). `local_rank` picks the GPU for "auto"/"cuda"
  // (rank modulo the number of visible GPUs).
  explicit Model(const std::string &path, const std::string &device = "cpu", int local_rank = 0);
  ~Model();
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  const std::string &path() const { return path_; }
  double cutoff() const { return cutoff_; }
  const std::vector<int> &atomic_numbers() const { return atomic_numbers_; }
  const std::string &dtype() const { return dtype_; }  // "float32" or "float64"
  const std::string &gmnn_version() const { return gmnn_version_; }
  int format_version() const { return format_version_; }
  std::string device() const;  // e.g. "cpu", "cuda:0"

  // Model element index of atomic number z, or -1 if the model does not know z.
  int species_index(int z) const;

  // Whether the file carries a calibrated per-atom uncertainty (format >= 3 with
  // gmnn/uncertainty "llpr"), which evaluate(..., with_uncertainty = true) returns.
  bool has_uncertainty() const { return has_uncertainty_; }
  // Throws std::runtime_error naming the file and what to do when !has_uncertainty().
  void require_uncertainty() const;

  // Evaluates the model (docs/model_file.md, "The module's forward").
  // edge_vectors: [3 * n_edges] float64, x_j - x_i; centers/neighbors: [n_edges];
  // species: [n_atoms] model element indices; atoms 0 .. n_centers-1 are the centres.
  // With need_gradients, out.edge_gradients holds dE/d(edge_vectors): from the module's
  // forward_gradients when it has one (uses_fused_gradients()), else one backward pass.
  // With with_uncertainty (needs has_uncertainty(), else require_uncertainty()'s error), the
  // module's forward_uncertainty runs instead of forward (the same energies, one forward and one
  // backward still) and out.atomic_uncertainty holds sigma_F per centre.
  void evaluate(const double *edge_vectors, const int64_t *centers, const int64_t *neighbors,
                int64_t n_edges, const int64_t *species, int64_t n_atoms, int64_t n_centers,
                bool need_gradients, EvalResult &out, bool with_uncertainty = false);

  // One forward (+ backward) pass over one block (gmnn_edge_block.h), whatever its size:
  // out.atomic_energies [block.n_centers()], out.edge_gradients [3 * block.n_edges()] in the
  // block's edge order (and out.atomic_uncertainty [block.n_centers()] with with_uncertainty).
  // pair_style gmnn calls it for each block of atoms_per_pass centres.
  void evaluate_block(const EdgeBlock &block, bool need_gradients, EvalResult &out,
                      bool with_uncertainty = false);

  // Whether the file has forward_gradients (and forward_uncertainty_gradients), the energies
  // and their edge gradients in one call without autograd (docs/model_file.md, python/gmnn/
  // fused.py). evaluate uses them for need_gradients unless set_use_fused(false) or the
  // environment variable GMNN_FUSED=0; files exported before them take the autograd path.
  bool has_fused_gradients() const;
  bool uses_fused_gradients() const { return use_fused_ && has_fused_gradients(); }
  void set_use_fused(bool on) { use_fused_ = on; }

  // Evaluate at most n atoms (centres) per forward/backward pass (0: all at once). Bounds the
  // peak memory, which otherwise grows with the number of atoms; results do not change.
  void set_atoms_per_pass(int64_t n) { atoms_per_pass_ = n > 0 ? n : 0; }
  int64_t atoms_per_pass() const { return atoms_per_pass_; }

 private:
  void evaluate_pass(const double *edge_vectors, const int64_t *centers, const int64_t *neighbors,
                     int64_t n_edges, const int64_t *species, int64_t n_atoms, int64_t n_centers,
                     bool need_gradients, bool with_uncertainty, EvalResult &out);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  double cutoff_ = 0.0;
  std::vector<int> atomic_numbers_;
  std::string dtype_;
  std::string gmnn_version_;
  int format_version_ = 0;
  bool has_uncertainty_ = false;
  std::string uncertainty_meta_;  // gmnn/uncertainty as read ("" before format 3)
  int64_t atoms_per_pass_ = kDefaultAtomsPerPass;
  bool use_fused_ = true;
};

// Sets torch's intra-op thread count: OMP_NUM_THREADS when set to a positive integer, else
// `fallback`. Returns the count used. (Creating a LAMMPS instance drops OpenMP to one thread.)
int configure_torch_threads(int fallback = 1);

// Whether this libtorch can use CUDA and sees at least one GPU.
bool cuda_available();

}  // namespace gmnn

#endif  // GMNN_MODEL_H
