// native_module.cpp -- gmnn._native: the C++ evaluator used by the LAMMPS pair style, exposed to
// Python so that C++ and Python results can be compared without LAMMPS.

#include "gmnn_elements.h"
#include "gmnn_geometry.h"
#include "gmnn_model.h"
#include "neighbor_list.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

using F64Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

struct Geometry {
  F64Array positions;
  int64_t n = 0;
  bool has_cell = false;
  std::array<double, 9> cell{};
  bool pbc[3] = {false, false, false};
};

Geometry parse_geometry(const F64Array &positions, const py::object &cell, const py::object &pbc) {
  Geometry g;
  g.positions = positions;
  if (positions.ndim() != 2 || positions.shape(1) != 3)
    throw std::invalid_argument("positions must have shape (N, 3)");
  g.n = positions.shape(0);
  if (!pbc.is_none()) {
    auto flags = pbc.cast<std::vector<bool>>();
    if (flags.size() == 1) flags.assign(3, flags[0]);
    if (flags.size() != 3) throw std::invalid_argument("pbc must be a bool or three bools");
    for (int a = 0; a < 3; ++a) g.pbc[a] = flags[a];
  }
  if (!cell.is_none()) {
    F64Array c = cell.cast<F64Array>();
    if (c.size() != 9) throw std::invalid_argument("cell must have shape (3, 3)");
    for (int k = 0; k < 9; ++k) g.cell[k] = c.data()[k];
    g.has_cell = true;
  }
  if ((g.pbc[0] || g.pbc[1] || g.pbc[2]) && !g.has_cell)
    throw std::invalid_argument("a periodic system needs a cell");
  return g;
}

gmnn::NeighborList neighbors_of(const Geometry &g, double cutoff) {
  return gmnn::build_neighbor_list(g.positions.data(), g.n, g.has_cell ? g.cell.data() : nullptr,
                                   g.pbc, cutoff);
}

py::dict compute(gmnn::Model &model, const F64Array &positions, const I64Array &numbers,
                 const py::object &cell, const py::object &pbc, bool uncertainty) {
  Geometry g = parse_geometry(positions, cell, pbc);
  if (numbers.ndim() != 1 || numbers.shape(0) != g.n)
    throw std::invalid_argument("atomic_numbers must have shape (N,) matching positions");
  std::vector<int64_t> species(g.n);
  for (int64_t i = 0; i < g.n; ++i) {
    const int z = static_cast<int>(numbers.data()[i]);
    const int s = model.species_index(z);
    if (s < 0)
      throw std::invalid_argument("atomic number " + std::to_string(z) + " (atom " +
                                  std::to_string(i) + ") is not in the model");
    species[i] = s;
  }

  gmnn::EvalResult res;
  gmnn::NeighborList nl;
  std::array<double, 9> w{};
  std::vector<double> forces(3 * g.n, 0.0);
  {
    py::gil_scoped_release release;
    nl = neighbors_of(g, model.cutoff());
    model.evaluate(nl.vectors.data(), nl.centers.data(), nl.neighbors.data(), nl.size(),
                   species.data(), g.n, g.n, true, res, uncertainty);
    gmnn::EdgeTally tally;
    tally.forces = forces.data();
    tally.virial_3x3 = w.data();
    gmnn::tally_edge_gradients(nl.vectors.data(), res.edge_gradients.data(), nl.centers.data(),
                               nl.neighbors.data(), nl.size(), tally);
  }

  py::array_t<double> f({g.n, static_cast<int64_t>(3)});
  std::copy(forces.begin(), forces.end(), f.mutable_data());
  py::array_t<double> e(g.n);
  std::copy(res.atomic_energies.begin(), res.atomic_energies.end(), e.mutable_data());
  py::array_t<double> v({3, 3});
  std::copy(w.begin(), w.end(), v.mutable_data());
  py::dict out("energy"_a = res.energy, "forces"_a = f, "virial"_a = v, "atomic_energies"_a = e,
               "n_edges"_a = nl.size());
  if (uncertainty) {
    py::array_t<double> u(g.n);
    std::copy(res.atomic_uncertainty.begin(), res.atomic_uncertainty.end(), u.mutable_data());
    out["forces_uncertainty"] = u;  // the name of GMNNCalculator's result
  }
  if (g.has_cell && (g.pbc[0] || g.pbc[1] || g.pbc[2])) {
    const double *c = g.cell.data();
    const double vol = std::abs(c[0] * (c[4] * c[8] - c[5] * c[7]) - c[1] * (c[3] * c[8] - c[5] * c[6]) +
                                c[2] * (c[3] * c[7] - c[4] * c[6]));
    py::array_t<double> s({3, 3});
    for (int k = 0; k < 9; ++k) s.mutable_data()[k] = -w[k] / vol;
    out["stress"] = s;  // ASE convention, eV / Å^3
  }
  return out;
}

py::tuple neighbor_list(const F64Array &positions, const py::object &cell, const py::object &pbc,
                        double cutoff) {
  Geometry g = parse_geometry(positions, cell, pbc);
  gmnn::NeighborList nl;
  {
    py::gil_scoped_release release;
    nl = neighbors_of(g, cutoff);
  }
  const int64_t ne = nl.size();
  py::array_t<int64_t> c(ne), nb(ne);
  py::array_t<double> vec({ne, static_cast<int64_t>(3)});
  py::array_t<int32_t> sh({ne, static_cast<int64_t>(3)});
  std::copy(nl.centers.begin(), nl.centers.end(), c.mutable_data());
  std::copy(nl.neighbors.begin(), nl.neighbors.end(), nb.mutable_data());
  std::copy(nl.vectors.begin(), nl.vectors.end(), vec.mutable_data());
  std::copy(nl.shifts.begin(), nl.shifts.end(), sh.mutable_data());
  return py::make_tuple(c, nb, vec, sh);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "C++ evaluator of exported gmnn models (the code behind pair_style gmnn)";
  m.attr("FORMAT_VERSION") = gmnn::kFormatVersion;

  py::class_<gmnn::Model>(m, "Model")
      .def(py::init<const std::string &, const std::string &, int>(), "path"_a,
           "device"_a = "cpu", "local_rank"_a = 0,
           "Load a model file (raises RuntimeError naming the problem if it is not a valid gmnn "
           "model). device: 'cpu', 'cuda', 'cuda:N' or 'auto'.")
      .def_property_readonly("path", &gmnn::Model::path)
      .def_property_readonly("cutoff", &gmnn::Model::cutoff)
      .def_property_readonly("atomic_numbers", &gmnn::Model::atomic_numbers)
      .def_property_readonly("dtype", &gmnn::Model::dtype)
      .def_property_readonly("device", &gmnn::Model::device)
      .def_property_readonly("gmnn_version", &gmnn::Model::gmnn_version)
      .def_property_readonly("format_version", &gmnn::Model::format_version)
      .def_property_readonly("has_uncertainty", &gmnn::Model::has_uncertainty,
                             "Whether the file has a calibrated per-atom uncertainty (format 3).")
      .def_property_readonly("has_fused_gradients", &gmnn::Model::has_fused_gradients,
                             "Whether the file has forward_gradients (energies and edge gradients "
                             "without autograd; docs/model_file.md).")
      .def_property(
          "use_fused", &gmnn::Model::uses_fused_gradients, &gmnn::Model::set_use_fused,
          "Whether forces come from the file's forward_gradients (when it has them; default, "
          "unless GMNN_FUSED=0) or from autograd over forward.")
      .def_property("atoms_per_pass", &gmnn::Model::atoms_per_pass,
                    &gmnn::Model::set_atoms_per_pass,
                    "Atoms per forward/backward pass (0: all at once; default 2048, as "
                    "pair_style gmnn and GMNNCalculator); bounds peak memory.")
      .def("compute", &compute, "positions"_a, "atomic_numbers"_a, "cell"_a = py::none(),
           "pbc"_a = py::none(), "uncertainty"_a = false,
           "Energy (eV), forces (N,3), virial (3,3; W = sum x F), atomic_energies (N,), and "
           "stress (3,3; ASE sign, eV/A^3) for periodic systems; with uncertainty=True also "
           "forces_uncertainty (N,), sigma_F per atom in eV/A (RuntimeError if the model has "
           "no calibrated uncertainty).")
      .def(
          "evaluate_edges",
          [](gmnn::Model &model, const F64Array &vectors, const I64Array &centers,
             const I64Array &neighbors, const I64Array &species, int64_t n_centers,
             bool uncertainty) -> py::tuple {
            const int64_t ne = centers.size();
            if (vectors.size() != 3 * ne || neighbors.size() != ne)
              throw std::invalid_argument("edge arrays have inconsistent lengths");
            gmnn::EvalResult res;
            {
              py::gil_scoped_release release;
              model.evaluate(vectors.data(), centers.data(), neighbors.data(), ne, species.data(),
                             species.size(), n_centers, true, res, uncertainty);
            }
            py::array_t<double> e(n_centers), gr({ne, static_cast<int64_t>(3)});
            std::copy(res.atomic_energies.begin(), res.atomic_energies.end(), e.mutable_data());
            std::copy(res.edge_gradients.begin(), res.edge_gradients.end(), gr.mutable_data());
            if (!uncertainty) return py::make_tuple(e, gr);
            py::array_t<double> u(n_centers);
            std::copy(res.atomic_uncertainty.begin(), res.atomic_uncertainty.end(), u.mutable_data());
            return py::make_tuple(e, gr, u);
          },
          "edge_vectors"_a, "centers"_a, "neighbors"_a, "species"_a, "n_centers"_a,
          "uncertainty"_a = false,
          "Raw forward + backward on a given edge list: (atomic_energies, dE/d edge_vectors), "
          "and with uncertainty=True sigma_F per centre as a third element.");

  m.def("neighbor_list", &neighbor_list, "positions"_a, "cell"_a = py::none(), "pbc"_a = py::none(),
        "cutoff"_a,
        "Directed edges closer than cutoff with periodic images: (centers, neighbors, vectors, "
        "shifts).");
  m.def("cuda_available", &gmnn::cuda_available);
  m.def("set_num_threads", &gmnn::configure_torch_threads, "fallback"_a = 1,
        "Set torch intra-op threads from OMP_NUM_THREADS (else `fallback`); returns the count.");
  m.def("atomic_number", &gmnn::atomic_number);
  m.def("chemical_symbol", &gmnn::chemical_symbol);
}
