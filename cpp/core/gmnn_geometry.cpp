// gmnn_geometry.cpp -- force and virial assembly from edge gradients (see gmnn_geometry.h).

#include "gmnn_geometry.h"

namespace gmnn {

template <typename Index>
void tally_edge_gradients(const double *r, const double *g, const Index *centers,
                          const Index *neighbors, int64_t n_edges, const EdgeTally &out) {
  const bool want_virial6 = out.virial || out.atom_virial;
  for (int64_t e = 0; e < n_edges; ++e) {
    const int64_t i = centers[e], j = neighbors[e];
    const double *ge = g + 3 * e, *re = r + 3 * e;
    if (out.forces) {
      double *fi = out.forces + i * out.force_stride;
      double *fj = out.forces + j * out.force_stride;
      for (int k = 0; k < 3; ++k) {
        fi[k] += ge[k];
        fj[k] -= ge[k];
      }
    }
    if (out.virial_3x3)
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) out.virial_3x3[3 * a + b] -= re[a] * ge[b];
    if (!want_virial6) continue;
    const double v[6] = {-re[0] * ge[0],
                         -re[1] * ge[1],
                         -re[2] * ge[2],
                         -0.5 * (re[0] * ge[1] + re[1] * ge[0]),
                         -0.5 * (re[0] * ge[2] + re[2] * ge[0]),
                         -0.5 * (re[1] * ge[2] + re[2] * ge[1])};
    if (out.virial)
      for (int k = 0; k < 6; ++k) out.virial[k] += v[k];
    if (out.atom_virial) {
      double *vi = out.atom_virial + i * out.atom_virial_stride;
      double *vj = out.atom_virial + j * out.atom_virial_stride;
      for (int k = 0; k < 6; ++k) {
        vi[k] += 0.5 * v[k];
        vj[k] += 0.5 * v[k];
      }
    }
  }
}

template void tally_edge_gradients<int32_t>(const double *, const double *, const int32_t *,
                                            const int32_t *, int64_t, const EdgeTally &);
template void tally_edge_gradients<int64_t>(const double *, const double *, const int64_t *,
                                            const int64_t *, int64_t, const EdgeTally &);

}  // namespace gmnn
