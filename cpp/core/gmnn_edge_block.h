// gmnn_edge_block.h -- one block of centre atoms as the model's input (docs/model_file.md), built
// edge by edge. No torch here.
//
// A block is its own small problem: its centres, atoms first .. last-1 of the caller's numbering,
// become atoms 0 .. m-1; every other atom an edge reaches gets the next index, in the order the
// edges first reach it. Model::evaluate splits a whole edge list into such blocks
// (atoms_per_pass); pair_style gmnn builds each block straight from the LAMMPS neighbour list, so
// that no whole-step edge list is kept.

#ifndef GMNN_EDGE_BLOCK_H
#define GMNN_EDGE_BLOCK_H

#include <cstdint>
#include <vector>

namespace gmnn {

class EdgeBlock {
 public:
  // Starts a block of the centres first .. last-1 among the caller's n_atoms atoms, and drops the
  // previous block's edges. species_of_centre: the model element index of each centre (m values).
  template <typename Species>
  void begin(int64_t first, int64_t last, int64_t n_atoms, const Species *species_of_centre) {
    begin(first, last, n_atoms);
    for (int64_t k = 0; k < n_centers_; ++k) species_[k] = static_cast<int64_t>(species_of_centre[k]);
  }

  // Adds the edge from centre i (first <= i < last) to atom j (caller's numbering) with
  // r = x_j - x_i; species_j is j's model element index.
  void add_edge(int64_t i, int64_t j, int64_t species_j, double dx, double dy, double dz) {
    int64_t lj;
    if (j >= first_ && j < first_ + n_centers_) {
      lj = j - first_;
    } else {
      int32_t &slot = slot_[j];
      if (slot < 0) {
        slot = static_cast<int32_t>(species_.size());
        species_.push_back(species_j);
        outside_.push_back(j);
      }
      lj = slot;
    }
    centers_.push_back(i - first_);
    neighbors_.push_back(lj);
    edge_vectors_.push_back(dx);
    edge_vectors_.push_back(dy);
    edge_vectors_.push_back(dz);
  }

  int64_t first() const { return first_; }
  int64_t n_centers() const { return n_centers_; }
  int64_t n_edges() const { return static_cast<int64_t>(centers_.size()); }
  int64_t n_atoms() const { return static_cast<int64_t>(species_.size()); }  // centres + others
  // the model's input, in the block's numbering
  const double *edge_vectors() const { return edge_vectors_.data(); }  // [3 * n_edges]
  const int64_t *centers() const { return centers_.data(); }           // [n_edges], < n_centers
  const int64_t *neighbors() const { return neighbors_.data(); }       // [n_edges], < n_atoms
  const int64_t *species() const { return species_.data(); }           // [n_atoms]
  // block atom -> caller's atom
  int64_t atom(int64_t k) const { return k < n_centers_ ? first_ + k : outside_[k - n_centers_]; }

  // bytes held (capacity), for memory_usage()
  double memory_bytes() const;

 private:
  void begin(int64_t first, int64_t last, int64_t n_atoms);

  int64_t first_ = 0, n_centers_ = 0;
  std::vector<double> edge_vectors_;
  std::vector<int64_t> centers_, neighbors_, species_, outside_;
  std::vector<int32_t> slot_;  // caller's atom -> block atom for atoms outside the block, else -1
};

}  // namespace gmnn

#endif  // GMNN_EDGE_BLOCK_H
