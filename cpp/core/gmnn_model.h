// gmnn_model.h -- load an exported gmnn TorchScript model and evaluate it on an edge list.
//
// The interface contract is docs/model_file.md. This header does not include torch, so the
// LAMMPS pair style and the Python bindings compile quickly; only gmnn_model.cpp sees libtorch.

#ifndef GMNN_MODEL_H
#define GMNN_MODEL_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gmnn {

// The model-file format version this build reads.
constexpr int kFormatVersion = 1;

// Output of one model evaluation.
struct EvalResult {
  double energy = 0.0;                  // sum of the atomic energies, accumulated in float64
  std::vector<double> atomic_energies;  // [n_centers]
  std::vector<double> edge_gradients;   // [3 * n_edges], g_e = dE / d(edge_vectors[e])
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

  // Evaluates the model (docs/model_file.md, "The module's forward").
  // edge_vectors: [3 * n_edges] float64, x_j - x_i; centers/neighbors: [n_edges];
  // species: [n_atoms] model element indices; atoms 0 .. n_centers-1 are the centres.
  // With need_gradients, out.edge_gradients holds dE/d(edge_vectors) (one backward pass).
  void evaluate(const double *edge_vectors, const int64_t *centers, const int64_t *neighbors,
                int64_t n_edges, const int64_t *species, int64_t n_atoms, int64_t n_centers,
                bool need_gradients, EvalResult &out);

  // Evaluate at most n centres per forward/backward pass (0: all at once). Bounds the peak
  // memory, which otherwise grows with the number of atoms; results do not change.
  void set_centers_per_pass(int64_t n) { centers_per_pass_ = n > 0 ? n : 0; }
  int64_t centers_per_pass() const { return centers_per_pass_; }

 private:
  void evaluate_pass(const double *edge_vectors, const int64_t *centers, const int64_t *neighbors,
                     int64_t n_edges, const int64_t *species, int64_t n_atoms, int64_t n_centers,
                     bool need_gradients, EvalResult &out);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  double cutoff_ = 0.0;
  std::vector<int> atomic_numbers_;
  std::string dtype_;
  std::string gmnn_version_;
  int format_version_ = 0;
  int64_t centers_per_pass_ = 0;
};

// Sets torch's intra-op thread count: OMP_NUM_THREADS when set to a positive integer, else
// `fallback`. Returns the count used. (Creating a LAMMPS instance drops OpenMP to one thread.)
int configure_torch_threads(int fallback = 1);

// Whether this libtorch can use CUDA and sees at least one GPU.
bool cuda_available();

// ---- torch-free helpers shared by the pair style and the Python bindings ----

// F_i += g_e (i = centers[e]), F_j -= g_e (j = neighbors[e]); forces: [3 * n_atoms], added to.
void accumulate_forces(const double *edge_gradients, const int64_t *centers,
                       const int64_t *neighbors, int64_t n_edges, double *forces);

// Virial (LAMMPS convention W = sum_i x_i (x) F_i): W_ab += -sum_e r_e,a g_e,b; virial: [9],
// row-major 3x3, added to.
void accumulate_virial(const double *edge_vectors, const double *edge_gradients, int64_t n_edges,
                       double *virial);

// Directed edges (both directions) of all pairs closer than `cutoff`, with periodic images.
struct NeighborList {
  std::vector<int64_t> centers;
  std::vector<int64_t> neighbors;  // index of the original atom (images map back to it)
  std::vector<double> vectors;     // [3 * n_edges], x_j + S.cell - x_i
  std::vector<int32_t> shifts;     // [3 * n_edges], integer cell shift S of the neighbour
  int64_t size() const { return static_cast<int64_t>(centers.size()); }
};

// positions: [3 * n] Cartesian (Å); cell: 9 values, rows are the lattice vectors, or nullptr
// when no direction is periodic; pbc: three flags. Cells shorter than 2 x cutoff are fine (all
// needed images are generated). Throws std::invalid_argument for a singular periodic cell.
NeighborList build_neighbor_list(const double *positions, int64_t n, const double *cell,
                                 const bool pbc[3], double cutoff);

// Chemical symbol <-> atomic number (1..118). Returns -1 / "" when unknown.
int atomic_number(const std::string &symbol);
std::string chemical_symbol(int z);

// Standard atomic weight of element z in g/mol (IUPAC 2016, as ase.data.atomic_masses); 0 when
// z is unknown.
double standard_atomic_mass(int z);

}  // namespace gmnn

#endif  // GMNN_MODEL_H
