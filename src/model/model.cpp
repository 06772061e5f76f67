#include "fracsweep/model/model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

const TensorInfo& Model::tensor(const std::string& name) const {
  for (const TensorInfo& t : tensors) {
    if (t.name == name) return t;
  }
  throw InputError(in_file(path, "model has no tensor named '" + name + "'"));
}

const char* tensor_role_name(TensorRole role) {
  return role == TensorRole::buffer ? "buffer" : "parameter";
}

int64_t count_with_role(const std::vector<TensorInfo>& tensors, TensorRole role) {
  int64_t total = 0;
  for (const TensorInfo& t : tensors) total += t.role == role ? t.count : 0;
  return total;
}

void append_tensor(std::vector<TensorInfo>& tensors, const std::string& name,
                   std::vector<int64_t> shape) {
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  const int64_t offset = tensors.empty() ? 0 : tensors.back().offset + tensors.back().count;
  tensors.push_back(TensorInfo{name, std::move(shape), offset, count});
}

namespace {

FiniteStats finite_stats_of(const float* values, int64_t count) {
  FiniteStats st;
  double sum = 0, sum_sq = 0;
  int64_t finite = 0;
  bool first = true;
  for (int64_t i = 0; i < count; ++i) {
    const float w = values[i];
    if (!std::isfinite(w)) continue;
    st.min = first ? w : std::min(st.min, w);
    st.max = first ? w : std::max(st.max, w);
    first = false;
    sum += w;
    sum_sq += static_cast<double>(w) * w;
    ++finite;
  }
  if (finite > 0) {
    const double mean = sum / static_cast<double>(finite);
    st.std = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(finite) - mean * mean));
  }
  return st;
}

}  // namespace

std::vector<FiniteStats> finite_stats(const Model& model) {
  const auto n = static_cast<int64_t>(model.tensors.size());
  std::vector<FiniteStats> stats(model.tensors.size());  // (n_tensors)
  // Dynamic: tensor sizes differ by orders of magnitude (embeddings vs norms).
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < n; ++t) {
    const TensorInfo& info = model.tensors[static_cast<size_t>(t)];
    stats[static_cast<size_t>(t)] = finite_stats_of(model.values.data() + info.offset, info.count);
  }
  return stats;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += 'x';
    text += std::to_string(shape[i]);
  }
  return text;
}

bool same_dimensions(const LlamaConfig& a, const LlamaConfig& b) {
  return a.dim == b.dim && a.hidden_dim == b.hidden_dim && a.n_layers == b.n_layers &&
         a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads && a.vocab_size == b.vocab_size;
}

std::string dimensions_text(const LlamaConfig& c) {
  return "dim=" + std::to_string(c.dim) + " hidden_dim=" + std::to_string(c.hidden_dim) +
         " layers=" + std::to_string(c.n_layers) + " heads=" + std::to_string(c.n_heads) +
         " kv_heads=" + std::to_string(c.n_kv_heads) + " vocab=" + std::to_string(c.vocab_size);
}

void check_same_tensor_tables(const std::vector<TensorInfo>& tensors, const std::string& path,
                              const std::vector<TensorInfo>& other, const std::string& other_path,
                              const std::string& what, bool same_stored) {
  check_input(tensors.size() == other.size(), what + ": " + other_path + " has " +
                                                  std::to_string(other.size()) + " tensors, " +
                                                  path + " has " + std::to_string(tensors.size()) +
                                                  "; expected two checkpoints of one architecture");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& a = tensors[i];
    const TensorInfo& b = other[i];
    check_input(a.name == b.name && a.shape == b.shape,
                what + ": tensor " + std::to_string(i) + " is '" + a.name + "' (" +
                    shape_text(a.shape) + ") in " + path + " but '" + b.name + "' (" +
                    shape_text(b.shape) + ") in " + other_path +
                    "; expected two checkpoints of one architecture");
    check_input(!same_stored || a.stored == b.stored,
                what + ": tensor '" + a.name + "' is stored as " + stored_type_name(b.stored) +
                    " in " + other_path + " but as " + stored_type_name(a.stored) + " in " + path +
                    "; values are moved bit-exactly, so the stored formats must match");
  }
}

void check_same_tensors(const Model& model, const Model& other, const std::string& what) {
  check_same_tensor_tables(model.tensors, model.path, other.tensors, other.path, what, false);
  for (size_t i = 0; i < model.tensors.size(); ++i) {  // values are compared offset by offset
    check_input(model.tensors[i].offset == other.tensors[i].offset,
                what + ": tensor '" + model.tensors[i].name + "' starts at value " +
                    std::to_string(model.tensors[i].offset) + " in " + model.path + " but at " +
                    std::to_string(other.tensors[i].offset) + " in " + other.path);
  }
}

}  // namespace fracsweep
