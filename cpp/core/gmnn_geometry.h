// gmnn_geometry.h -- from the model's edge gradients to forces and virials. The one place where
// this happens: the LAMMPS pair style (newton_pair on and off) and gmnn._native both call it.
// No torch here.

#ifndef GMNN_GEOMETRY_H
#define GMNN_GEOMETRY_H

#include <cstdint>

namespace gmnn {

// Where tally_edge_gradients adds its results (all added to, never cleared). A null pointer
// skips that quantity.
struct EdgeTally {
  double *forces = nullptr;        // F_i at forces[i * force_stride + 0..2]
  int64_t force_stride = 3;
  double *virial = nullptr;        // [6] global virial, LAMMPS order xx yy zz xy xz yz (symmetric part)
  double *virial_3x3 = nullptr;    // [9] global virial W_ab, row-major, as it comes (not symmetrised)
  double *atom_virial = nullptr;   // [6] per atom at atom_virial[i * atom_virial_stride], LAMMPS order;
  int64_t atom_virial_stride = 6;  //     each edge gives half to each of its two atoms
};

// For each edge e from i = centers[e] to j = neighbors[e], with r_e = x_j - x_i (edge_vectors,
// [3 * n_edges]) and g_e = dE/dr_e (edge_gradients, [3 * n_edges]):
//   F_i += g_e,  F_j -= g_e,  W_ab -= r_e,a g_e,b   (LAMMPS convention W = sum_i x_i (x) F_i).
// Index: int32_t (LAMMPS atom indices) or int64_t (gmnn._native).
template <typename Index>
void tally_edge_gradients(const double *edge_vectors, const double *edge_gradients,
                          const Index *centers, const Index *neighbors, int64_t n_edges,
                          const EdgeTally &out);

}  // namespace gmnn

#endif  // GMNN_GEOMETRY_H
