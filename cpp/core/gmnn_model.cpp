// gmnn_model.cpp -- the only translation unit that includes libtorch.

#include "gmnn_model.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace gmnn {

namespace {

std::string first_line(const std::string &text) {
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::string trim(const std::string &s) {
  const char *ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

[[noreturn]] void fail(const std::string &path, const std::string &what) {
  throw std::runtime_error("gmnn model file '" + path + "': " + what);
}

torch::Device resolve_device(const std::string &request, int local_rank) {
  std::string req = request.empty() ? "cpu" : request;
  if (req == "cpu") return torch::Device(torch::kCPU);
  bool want_cuda = req == "cuda" || req.rfind("cuda:", 0) == 0;
  if (req != "auto" && !want_cuda)
    throw std::runtime_error("unknown device '" + request + "' (use auto, cpu, cuda or cuda:N)");
  if (!cuda_available()) {
    if (req == "auto") return torch::Device(torch::kCPU);
    throw std::runtime_error("device '" + request +
                             "' requested, but this libtorch has no CUDA support or no GPU is "
                             "visible (use device cpu or auto)");
  }
  int n_gpu = static_cast<int>(torch::cuda::device_count());
  int index = std::max(local_rank, 0) % n_gpu;
  if (req.rfind("cuda:", 0) == 0) {
    try {
      index = std::stoi(req.substr(5));
    } catch (const std::exception &) {
      throw std::runtime_error("bad device '" + request + "'");
    }
    if (index < 0 || index >= n_gpu)
      throw std::runtime_error("device '" + request + "' does not exist (" +
                               std::to_string(n_gpu) + " GPU(s) visible)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

// A file that torch::jit::load refused may still be a PyTorch file of another kind: a zip
// archive written by torch.save (a data.pkl, no compiled code). Returns what to tell the user
// about it, or "" when it is not one (then the load error stands).
std::string describe_torch_save_file(const std::string &path) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl") || reader.hasRecord("constants.pkl")) return "";
    for (const auto &name : reader.getAllRecords())
      if (name.rfind("code/", 0) == 0) return "";
    // python/gmnn/checkpoint.py pickles {"kind": "gmnn-checkpoint", ...}; a pickled str keeps its
    // UTF-8 bytes as they are.
    auto record = reader.getRecord("data.pkl");
    const char *data = static_cast<const char *>(std::get<0>(record).get());
    const std::string pickle(data, std::get<1>(record));
    if (pickle.find("gmnn-checkpoint") != std::string::npos)
      return "'" + path + "' is a gmnn training checkpoint, not a model file; convert it with: gmnn-export " +
             path + " -o model.pt";
    return "'" + path + "' is a PyTorch file written by torch.save (weights or a state_dict?), not an "
           "exported gmnn model; write one with gmnn-export (from a training checkpoint) or "
           "gmnn.export_model (from a GMNN in Python)";
  } catch (const std::exception &) {
    return "";  // not a zip archive, or a broken one
  }
}

}  // namespace

struct Model::Impl {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  torch::Dtype dtype = torch::kFloat64;
  // the module's forward_gradients / forward_uncertainty_gradients (python/gmnn/fused.py), when
  // the file has them (exported by gmnn >= 0.x with the fused path; older files: autograd)
  bool has_fused = false, has_fused_uncertainty = false;
};

bool cuda_available() { return torch::cuda::is_available() && torch::cuda::device_count() > 0; }

int configure_torch_threads(int fallback) {
  int n = fallback > 0 ? fallback : 1;
  if (const char *env = std::getenv("OMP_NUM_THREADS")) {
    char *end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && v > 0) n = static_cast<int>(v);
  }
  if (at::get_num_threads() != n) at::set_num_threads(n);
  return n;
}

// CRC-32 (the zlib polynomial), continued from `crc`, as Python's zlib.crc32.
static uint32_t crc32_update(uint32_t crc, const unsigned char *data, size_t n) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

// The checksum gmnn-export records (python/gmnn/export.py: content_checksum): CRC-32 over the
// names and bytes of every record but the serialization id, the torch version and itself.
static std::string content_checksum(const std::string &path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  std::vector<std::string> names;
  for (const auto &name : reader.getAllRecords())
    if (name != ".data/serialization_id" && name != "version" && name != ".data/version" &&
        name != "extra/gmnn/checksum")
      names.push_back(name);
  std::sort(names.begin(), names.end());
  uint32_t crc = 0;
  for (const auto &name : names) {
    crc = crc32_update(crc, reinterpret_cast<const unsigned char *>(name.data()), name.size());
    auto record = reader.getRecord(name);
    crc = crc32_update(crc, static_cast<const unsigned char *>(std::get<0>(record).get()), std::get<1>(record));
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", crc);
  return hex;
}

Model::Model(const std::string &path, const std::string &device, int local_rank)
    : impl_(new Impl), path_(path) {
  {
    std::ifstream probe(path, std::ios::binary | std::ios::ate);
    if (!probe) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
    if (probe.tellg() <= 0) fail(path, "the file is empty");
  }

  torch::jit::ExtraFilesMap extra{{"gmnn/format_version", ""}, {"gmnn/gmnn_version", ""},
                                  {"gmnn/cutoff", ""},         {"gmnn/atomic_numbers", ""},
                                  {"gmnn/dtype", ""},          {"gmnn/units", ""},
                                  {"gmnn/uncertainty", ""},    {"gmnn/checksum", ""}};
  try {
    impl_->device = resolve_device(device, local_rank);
  } catch (const std::exception &e) {
    fail(path, e.what());
  }
  // Load straight onto the device: a frozen module keeps its weights as graph constants, which
  // Module::to() would not move.
  try {
    impl_->module = torch::jit::load(path, impl_->device, extra);
  } catch (const std::exception &e) {
    const std::string other = describe_torch_save_file(path);
    if (!other.empty()) throw std::runtime_error(other);
    fail(path, "cannot be read as a TorchScript archive (not a model file, or corrupt/truncated): " +
                   first_line(e.what()));
  }

  const std::string recorded = trim(extra["gmnn/checksum"]);
  if (!recorded.empty()) {  // files written before checksums existed have none
    std::string actual;
    try {
      actual = content_checksum(path);
    } catch (const std::exception &e) {
      fail(path, "cannot verify the model file: " + first_line(e.what()));
    }
    if (actual != recorded)
      fail(path, "checksum mismatch (file " + actual + ", recorded " + recorded + "): the model file is corrupt");
  }
  const std::string version = trim(extra["gmnn/format_version"]);
  if (version.empty())
    fail(path, "not a gmnn model (no gmnn/format_version metadata; export it with gmnn-export)");
  try {
    size_t used = 0;
    format_version_ = std::stoi(version, &used);
    if (used != version.size()) throw std::invalid_argument(version);
  } catch (const std::exception &) {
    fail(path, "bad gmnn/format_version '" + version + "'");
  }
  if (format_version_ < kOldestFormatVersion || format_version_ > kFormatVersion)
    fail(path, "format_version " + std::to_string(format_version_) +
                   " is not supported; this build of gmnn reads format_version " +
                   std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) +
                   " (re-export the model or update gmnn)");

  const std::string units = trim(extra["gmnn/units"]);
  if (units != "metal")
    fail(path, "units '" + units + "' are not supported; gmnn models must use 'metal' (eV, Angstrom)");

  dtype_ = trim(extra["gmnn/dtype"]);
  if (dtype_ == "float64")
    impl_->dtype = torch::kFloat64;
  else if (dtype_ == "float32")
    impl_->dtype = torch::kFloat32;
  else
    fail(path, "bad gmnn/dtype '" + dtype_ + "' (expected float32 or float64)");

  const std::string cut = trim(extra["gmnn/cutoff"]);
  try {
    size_t used = 0;
    cutoff_ = std::stod(cut, &used);
    if (used != cut.size()) throw std::invalid_argument(cut);
  } catch (const std::exception &) {
    fail(path, "bad gmnn/cutoff '" + cut + "'");
  }
  if (!(cutoff_ > 0.0)) fail(path, "gmnn/cutoff must be positive, got '" + cut + "'");

  {
    std::istringstream in(extra["gmnn/atomic_numbers"]);
    std::string tok;
    std::set<int> seen;
    while (in >> tok) {
      int z = 0;
      try {
        size_t used = 0;
        z = std::stoi(tok, &used);
        if (used != tok.size()) throw std::invalid_argument(tok);
      } catch (const std::exception &) {
        fail(path, "bad entry '" + tok + "' in gmnn/atomic_numbers");
      }
      if (z < 1 || z > 118 || !seen.insert(z).second)
        fail(path, "bad or repeated atomic number " + tok + " in gmnn/atomic_numbers");
      atomic_numbers_.push_back(z);
    }
    if (atomic_numbers_.empty()) fail(path, "gmnn/atomic_numbers is empty");
  }
  gmnn_version_ = trim(extra["gmnn/gmnn_version"]);

  // format 3: "llpr" (calibrated; the module's forward_uncertainty gives sigma_F) or "none".
  // Older files have no uncertainty whatever their metadata says.
  if (format_version_ >= 3) {
    uncertainty_meta_ = trim(extra["gmnn/uncertainty"]);
    if (uncertainty_meta_ == "llpr") {
      if (!impl_->module.find_method("forward_uncertainty"))
        fail(path, "gmnn/uncertainty is 'llpr' but the module has no forward_uncertainty method");
      has_uncertainty_ = true;
    } else if (!uncertainty_meta_.empty() && uncertainty_meta_ != "none") {
      fail(path, "bad gmnn/uncertainty '" + uncertainty_meta_ + "' (expected llpr or none)");
    }
  }

  impl_->has_fused = impl_->module.find_method("forward_gradients").has_value();
  impl_->has_fused_uncertainty = impl_->module.find_method("forward_uncertainty_gradients").has_value();
  // GMNN_FUSED=0: autograd even when the file has the fused methods (benchmarks, debugging)
  if (const char *env = std::getenv("GMNN_FUSED")) use_fused_ = std::string(env) != "0";
  impl_->module.eval();
}

bool Model::has_fused_gradients() const { return impl_->has_fused; }

void Model::require_uncertainty() const {
  if (has_uncertainty_) return;
  const std::string why =
      format_version_ < 3
          ? "it is a format-" + std::to_string(format_version_) +
                " file, written before model files carried uncertainties"
          : "it was exported without calibration (gmnn/uncertainty " +
                (uncertainty_meta_.empty() ? std::string("missing") : "'" + uncertainty_meta_ + "'") + ")";
  throw std::runtime_error("model '" + path_ + "' has no calibrated uncertainty: " + why +
                           "; re-export its checkpoint with a gmnn that calibrates (gmnn-calibrate, "
                           "then gmnn-export)");
}

Model::~Model() = default;

std::string Model::device() const { return impl_->device.str(); }

int Model::species_index(int z) const {
  auto it = std::find(atomic_numbers_.begin(), atomic_numbers_.end(), z);
  return it == atomic_numbers_.end() ? -1 : static_cast<int>(it - atomic_numbers_.begin());
}

void Model::evaluate(const double *edge_vectors, const int64_t *centers, const int64_t *neighbors,
                     int64_t n_edges, const int64_t *species, int64_t n_atoms, int64_t n_centers,
                     bool need_gradients, EvalResult &out, bool with_uncertainty) {
  if (with_uncertainty) require_uncertainty();
  const int64_t B = atoms_per_pass_;
  if (B <= 0 || n_centers <= B) {
    evaluate_pass(edge_vectors, centers, neighbors, n_edges, species, n_atoms, n_centers,
                  need_gradients, with_uncertainty, out);
    return;
  }

  // Several passes over blocks of B centres (gmnn_edge_block.h). Peak memory then scales with B
  // instead of with the number of atoms; the results are the same.
  out.atomic_energies.assign(static_cast<size_t>(n_centers), 0.0);
  out.edge_gradients.assign(3 * static_cast<size_t>(n_edges), 0.0);
  if (with_uncertainty)
    out.atomic_uncertainty.assign(static_cast<size_t>(n_centers), 0.0);
  else
    out.atomic_uncertainty.clear();
  out.energy = 0.0;
  out.forward_seconds = out.backward_seconds = 0.0;
  const int64_t n_blocks = (n_centers + B - 1) / B;
  std::vector<int64_t> start(n_blocks + 1, 0), order(static_cast<size_t>(n_edges));
  for (int64_t e = 0; e < n_edges; ++e) ++start[centers[e] / B + 1];
  for (int64_t b = 0; b < n_blocks; ++b) start[b + 1] += start[b];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < n_edges; ++e) order[fill[centers[e] / B]++] = e;
  }
  EdgeBlock block;
  EvalResult part;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t a = b * B, z = std::min(a + B, n_centers);
    block.begin(a, z, n_atoms, species + a);
    for (int64_t k = start[b]; k < start[b + 1]; ++k) {
      const int64_t e = order[k];
      const double *r = edge_vectors + 3 * e;
      block.add_edge(centers[e], neighbors[e], species[neighbors[e]], r[0], r[1], r[2]);
    }
    evaluate_pass(block.edge_vectors(), block.centers(), block.neighbors(), block.n_edges(),
                  block.species(), block.n_atoms(), block.n_centers(), need_gradients,
                  with_uncertainty, part);
    std::copy(part.atomic_energies.begin(), part.atomic_energies.end(), out.atomic_energies.begin() + a);
    std::copy(part.atomic_uncertainty.begin(), part.atomic_uncertainty.end(),
              out.atomic_uncertainty.begin() + a);
    out.energy += part.energy;
    out.forward_seconds += part.forward_seconds;
    out.backward_seconds += part.backward_seconds;
    for (int64_t k = start[b]; k < start[b + 1]; ++k)
      std::memcpy(&out.edge_gradients[3 * order[k]], &part.edge_gradients[3 * (k - start[b])],
                  3 * sizeof(double));
  }
}

void Model::evaluate_block(const EdgeBlock &block, bool need_gradients, EvalResult &out,
                           bool with_uncertainty) {
  if (with_uncertainty) require_uncertainty();
  evaluate_pass(block.edge_vectors(), block.centers(), block.neighbors(), block.n_edges(),
                block.species(), block.n_atoms(), block.n_centers(), need_gradients,
                with_uncertainty, out);
}

void Model::evaluate_pass(const double *edge_vectors, const int64_t *centers,
                          const int64_t *neighbors, int64_t n_edges, const int64_t *species,
                          int64_t n_atoms, int64_t n_centers, bool need_gradients,
                          bool with_uncertainty, EvalResult &out) {
  const bool fused = need_gradients && use_fused_ && n_edges > 0 &&
                     (with_uncertainty ? impl_->has_fused_uncertainty : impl_->has_fused);
  torch::AutoGradMode grad_mode(need_gradients && !fused);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const auto &dev = impl_->device;

  // The input buffers belong to the caller and are not modified by the module; from_blob avoids
  // copies on the CPU. The float64 edge vectors become a fresh leaf tensor in the model dtype.
  torch::Tensor vec = torch::from_blob(const_cast<double *>(edge_vectors), {n_edges, 3}, f64);
  if (impl_->dtype != torch::kFloat64 || !dev.is_cpu())
    vec = vec.to(dev, impl_->dtype);
  else
    vec = vec.detach();  // a leaf that does not alias autograd history
  if (need_gradients && !fused) vec.requires_grad_(true);
  torch::Tensor c = torch::from_blob(const_cast<int64_t *>(centers), {n_edges}, i64);
  torch::Tensor nb = torch::from_blob(const_cast<int64_t *>(neighbors), {n_edges}, i64);
  torch::Tensor sp = torch::from_blob(const_cast<int64_t *>(species), {n_atoms}, i64);
  if (!dev.is_cpu()) {
    c = c.to(dev);
    nb = nb.to(dev);
    sp = sp.to(dev);
  }

  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  std::vector<torch::jit::IValue> inputs{vec, c, nb, sp, n_centers};
  torch::Tensor energies, sigma, grad;
  auto t0 = Clock::now();
  try {
    if (fused) {
      // energies (sigma_F, phi) and dE/d(edge_vectors) in one call, no autograd graph
      auto outputs = impl_->module.get_method(with_uncertainty ? "forward_uncertainty_gradients"
                                                               : "forward_gradients")(inputs).toTuple();
      const auto &items = outputs->elements();
      energies = items.at(0).toTensor();
      if (with_uncertainty) sigma = items.at(1).toTensor();
      grad = items.back().toTensor();
    } else if (with_uncertainty) {
      // (atomic energies, sigma_F, last-layer features); the features are for Python only
      auto outputs = impl_->module.get_method("forward_uncertainty")(inputs).toTuple();
      energies = outputs->elements().at(0).toTensor();
      sigma = outputs->elements().at(1).toTensor();
    } else {
      energies = impl_->module.forward(inputs).toTensor();
    }
  } catch (const std::exception &e) {
    throw std::runtime_error("gmnn model '" + path_ + "' failed in " +
                             (fused ? (with_uncertainty ? "forward_uncertainty_gradients: " : "forward_gradients: ")
                                    : (with_uncertainty ? "forward_uncertainty: " : "forward: ")) +
                             first_line(e.what()));
  }
  out.forward_seconds = seconds_since(t0);
  out.backward_seconds = 0.0;
  if (energies.dim() != 1 || energies.size(0) != n_centers)
    throw std::runtime_error("gmnn model '" + path_ + "' returned atomic energies of shape " +
                             c10::str(energies.sizes()) + ", expected [" +
                             std::to_string(n_centers) + "]");
  if (with_uncertainty) {
    if (sigma.dim() != 1 || sigma.size(0) != n_centers)
      throw std::runtime_error("gmnn model '" + path_ + "' returned uncertainties of shape " +
                               c10::str(sigma.sizes()) + ", expected [" +
                               std::to_string(n_centers) + "]");
    torch::Tensor s_cpu = sigma.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    out.atomic_uncertainty.assign(s_cpu.data_ptr<double>(), s_cpu.data_ptr<double>() + n_centers);
  } else {
    out.atomic_uncertainty.clear();
  }

  // format 2: float64 already (the shifts are added in float64); format 1: the model dtype
  torch::Tensor e_cpu = energies.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  out.atomic_energies.assign(e_cpu.data_ptr<double>(), e_cpu.data_ptr<double>() + n_centers);
  double total = 0.0;
  for (double e : out.atomic_energies) total += e;
  out.energy = total;

  out.edge_gradients.assign(3 * static_cast<size_t>(n_edges), 0.0);
  if (fused) {
    if (grad.dim() != 2 || grad.size(0) != n_edges || grad.size(1) != 3)
      throw std::runtime_error("gmnn model '" + path_ + "' returned edge gradients of shape " +
                               c10::str(grad.sizes()) + ", expected [" + std::to_string(n_edges) + ", 3]");
    grad = grad.to(torch::kCPU, torch::kFloat64).contiguous();
    std::memcpy(out.edge_gradients.data(), grad.data_ptr<double>(),
                sizeof(double) * 3 * static_cast<size_t>(n_edges));
    return;
  }
  if (!need_gradients || n_edges == 0 || !energies.requires_grad()) return;
  t0 = Clock::now();
  try {
    auto grads = torch::autograd::grad({energies.sum()}, {vec}, /*grad_outputs=*/{},
                                       /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    grad = grads[0];
  } catch (const std::exception &e) {
    throw std::runtime_error("gmnn model '" + path_ + "' failed in backward: " + first_line(e.what()));
  }
  out.backward_seconds = seconds_since(t0);
  if (!grad.defined()) return;  // energy independent of the edges
  grad = grad.to(torch::kCPU, torch::kFloat64).contiguous();
  std::memcpy(out.edge_gradients.data(), grad.data_ptr<double>(),
              sizeof(double) * 3 * static_cast<size_t>(n_edges));
}

}  // namespace gmnn
