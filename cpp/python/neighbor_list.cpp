// neighbor_list.cpp -- the neighbour list of gmnn._native (see neighbor_list.h). No torch here.

#include "neighbor_list.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

namespace gmnn {

namespace {

bool invert3(const double *m, double *inv) {
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  double scale = 0.0;
  for (int k = 0; k < 9; ++k) scale = std::max(scale, std::abs(m[k]));
  if (scale == 0.0 || std::abs(det) <= 1e-12 * scale * scale * scale) return false;
  inv[0] = (m[4] * m[8] - m[5] * m[7]) / det;
  inv[1] = (m[2] * m[7] - m[1] * m[8]) / det;
  inv[2] = (m[1] * m[5] - m[2] * m[4]) / det;
  inv[3] = (m[5] * m[6] - m[3] * m[8]) / det;
  inv[4] = (m[0] * m[8] - m[2] * m[6]) / det;
  inv[5] = (m[2] * m[3] - m[0] * m[5]) / det;
  inv[6] = (m[3] * m[7] - m[4] * m[6]) / det;
  inv[7] = (m[1] * m[6] - m[0] * m[7]) / det;
  inv[8] = (m[0] * m[4] - m[1] * m[3]) / det;
  return true;
}

}  // namespace

NeighborList build_neighbor_list(const double *positions, int64_t n, const double *cell,
                                 const bool pbc[3], double cutoff) {
  NeighborList nl;
  if (!(cutoff > 0.0)) throw std::invalid_argument("cutoff must be positive");
  if (n <= 0) return nl;
  const bool any_pbc = pbc[0] || pbc[1] || pbc[2];

  // Wrap periodic fractional coordinates into [0, 1): then |S_a| <= ceil(cutoff / d_a) suffices,
  // with d_a the spacing of the lattice planes spanned by the other two vectors.
  std::vector<double> w(positions, positions + 3 * n);
  std::array<int, 3> nrep{0, 0, 0};
  double inv[9];
  if (any_pbc) {
    if (cell == nullptr || !invert3(cell, inv))
      throw std::invalid_argument("a periodic system needs a non-singular cell");
    for (int a = 0; a < 3; ++a) {
      if (!pbc[a]) continue;
      const double len = std::sqrt(inv[a] * inv[a] + inv[3 + a] * inv[3 + a] + inv[6 + a] * inv[6 + a]);
      nrep[a] = static_cast<int>(std::ceil(cutoff * len));
    }
    for (int64_t i = 0; i < n; ++i) {
      double f[3];
      for (int a = 0; a < 3; ++a)
        f[a] = w[3 * i] * inv[a] + w[3 * i + 1] * inv[3 + a] + w[3 * i + 2] * inv[6 + a];
      for (int a = 0; a < 3; ++a)
        if (pbc[a]) f[a] -= std::floor(f[a]);
      for (int b = 0; b < 3; ++b)
        w[3 * i + b] = f[0] * cell[b] + f[1] * cell[3 + b] + f[2] * cell[6 + b];
    }
  }

  double lo[3], hi[3];
  for (int b = 0; b < 3; ++b) {
    lo[b] = hi[b] = w[b];
    for (int64_t i = 1; i < n; ++i) {
      lo[b] = std::min(lo[b], w[3 * i + b]);
      hi[b] = std::max(hi[b], w[3 * i + b]);
    }
    lo[b] -= cutoff;
    hi[b] += cutoff;
  }

  // Images (atom, shift, position) that can be within the cutoff of some atom.
  struct Image {
    int64_t atom;
    int32_t s[3];
    double x[3];
  };
  std::vector<Image> images;
  for (int s0 = -nrep[0]; s0 <= nrep[0]; ++s0)
    for (int s1 = -nrep[1]; s1 <= nrep[1]; ++s1)
      for (int s2 = -nrep[2]; s2 <= nrep[2]; ++s2) {
        double t[3] = {0, 0, 0};
        if (any_pbc)
          for (int b = 0; b < 3; ++b) t[b] = s0 * cell[b] + s1 * cell[3 + b] + s2 * cell[6 + b];
        for (int64_t j = 0; j < n; ++j) {
          Image im{j, {s0, s1, s2}, {w[3 * j] + t[0], w[3 * j + 1] + t[1], w[3 * j + 2] + t[2]}};
          if (im.x[0] < lo[0] || im.x[0] > hi[0] || im.x[1] < lo[1] || im.x[1] > hi[1] ||
              im.x[2] < lo[2] || im.x[2] > hi[2])
            continue;
          images.push_back(im);
        }
      }

  // Bin the images on a grid of cubes of side >= cutoff; at most ~2^21 bins.
  int64_t nb[3];
  double side[3];
  for (int b = 0; b < 3; ++b) {
    const double extent = hi[b] - lo[b];
    nb[b] = std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(extent / cutoff), 128));
    side[b] = extent / static_cast<double>(nb[b]);
    if (!(side[b] > 0.0)) side[b] = cutoff;
  }
  auto bin_of = [&](const double *x, int b) {
    int64_t k = static_cast<int64_t>((x[b] - lo[b]) / side[b]);
    return std::min<int64_t>(std::max<int64_t>(k, 0), nb[b] - 1);
  };
  const int64_t nbins = nb[0] * nb[1] * nb[2];
  std::vector<int64_t> start(nbins + 1, 0), order(images.size());
  std::vector<int64_t> bin(images.size());
  for (size_t k = 0; k < images.size(); ++k) {
    bin[k] = (bin_of(images[k].x, 0) * nb[1] + bin_of(images[k].x, 1)) * nb[2] + bin_of(images[k].x, 2);
    ++start[bin[k] + 1];
  }
  for (int64_t b = 0; b < nbins; ++b) start[b + 1] += start[b];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (size_t k = 0; k < images.size(); ++k) order[fill[bin[k]]++] = static_cast<int64_t>(k);
  }

  const double cut2 = cutoff * cutoff;
  for (int64_t i = 0; i < n; ++i) {
    const double *xi = &w[3 * i];
    int64_t bi[3] = {bin_of(xi, 0), bin_of(xi, 1), bin_of(xi, 2)};
    for (int64_t a = std::max<int64_t>(bi[0] - 1, 0); a <= std::min(bi[0] + 1, nb[0] - 1); ++a)
      for (int64_t b = std::max<int64_t>(bi[1] - 1, 0); b <= std::min(bi[1] + 1, nb[1] - 1); ++b)
        for (int64_t c = std::max<int64_t>(bi[2] - 1, 0); c <= std::min(bi[2] + 1, nb[2] - 1); ++c) {
          const int64_t cell_id = (a * nb[1] + b) * nb[2] + c;
          for (int64_t p = start[cell_id]; p < start[cell_id + 1]; ++p) {
            const Image &im = images[order[p]];
            if (im.atom == i && im.s[0] == 0 && im.s[1] == 0 && im.s[2] == 0) continue;
            const double d[3] = {im.x[0] - xi[0], im.x[1] - xi[1], im.x[2] - xi[2]};
            const double rsq = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            if (rsq >= cut2) continue;
            if (rsq < 1e-20)  // r/|r| is undefined: the moments would be NaN
              throw std::runtime_error("gmnn: atoms " + std::to_string(i) + " and " + std::to_string(im.atom) +
                                       " are at the same position (coincident atoms)");
            nl.centers.push_back(i);
            nl.neighbors.push_back(im.atom);
            nl.vectors.insert(nl.vectors.end(), d, d + 3);
            nl.shifts.insert(nl.shifts.end(), im.s, im.s + 3);
          }
        }
  }
  return nl;
}

}  // namespace gmnn
