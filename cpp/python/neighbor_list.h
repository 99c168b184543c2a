// neighbor_list.h -- directed edges with periodic images, for gmnn._native (compute() and
// neighbor_list()). LAMMPS builds its own lists; this code is not in the pair style's library.

#ifndef GMNN_NEIGHBOR_LIST_H
#define GMNN_NEIGHBOR_LIST_H

#include <cstdint>
#include <vector>

namespace gmnn {

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

}  // namespace gmnn

#endif  // GMNN_NEIGHBOR_LIST_H
