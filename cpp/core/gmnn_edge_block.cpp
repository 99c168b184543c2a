// gmnn_edge_block.cpp -- see gmnn_edge_block.h.

#include "gmnn_edge_block.h"

namespace gmnn {

void EdgeBlock::begin(int64_t first, int64_t last, int64_t n_atoms) {
  for (int64_t j : outside_) slot_[j] = -1;  // only the previous block's atoms were set
  if (static_cast<int64_t>(slot_.size()) < n_atoms) slot_.resize(n_atoms, -1);
  first_ = first;
  n_centers_ = last > first ? last - first : 0;
  edge_vectors_.clear();
  centers_.clear();
  neighbors_.clear();
  outside_.clear();
  species_.assign(n_centers_, 0);
}

double EdgeBlock::memory_bytes() const {
  return sizeof(double) * edge_vectors_.capacity() +
         sizeof(int64_t) * (centers_.capacity() + neighbors_.capacity() + species_.capacity() +
                            outside_.capacity()) +
         sizeof(int32_t) * slot_.capacity();
}

}  // namespace gmnn
