#pragma once
// A loaded model: its architecture hyper-parameters and every tensor in one flat float32 buffer,
// with named tensors as views into it. Trials perturb `values` in place and restore it.
//
// Each tensor has a role: a learned parameter (trained weights and biases, batch-norm gamma and
// beta, embeddings, norms) or a buffer (state the forward pass reads but training does not
// learn: batch-norm running_mean / running_var). Loaders mark buffers when they read a model;
// the default scope of every strategy, and so "fraction of weights", covers learned parameters
// only (perturb.hpp, in_scope).
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/model/stored_type.hpp"
#include "fracsweep/model/weight_buffer.hpp"

namespace fracsweep {

// Llama-family hyper-parameters (llama2.c naming).
struct LlamaConfig {
  int64_t dim = 0;         // residual width
  int64_t hidden_dim = 0;  // FFN width
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t vocab_size = 0;
  int64_t seq_len = 0;            // longest sequence the model was trained for
  bool shared_classifier = true;  // output projection is tok_embeddings
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;

  int64_t head_dim() const { return dim / n_heads; }
  int64_t kv_dim() const { return head_dim() * n_kv_heads; }
};

// What a tensor is to the model: learned by training, or a non-learned buffer (statistics).
enum class TensorRole { parameter, buffer };
const char* tensor_role_name(TensorRole role);  // "parameter", "buffer"

// One named tensor: a contiguous row-major view into Model::values.
struct TensorInfo {
  std::string name;                     // e.g. "layers.3.attn.wq", "tok_embeddings", "norm_final"
  std::vector<int64_t> shape;           // row-major, e.g. {dim, dim}
  int64_t offset = 0;                   // first element in Model::values
  int64_t count = 0;                    // product of shape
  StoredType stored = StoredType::f32;  // number format in the model file
  TensorRole role = TensorRole::parameter;

  bool is_buffer() const { return role == TensorRole::buffer; }
};

// Total elements of the tensors with role `role`.
int64_t count_with_role(const std::vector<TensorInfo>& tensors, TensorRole role);

struct Model {
  std::string path;                    // file it was loaded from
  std::string format;                  // e.g. "llama2c-v0", "gguf-v3", "hf-llama", "hf-gpt2"
  std::string architecture = "llama";  // "llama", "gpt2" (`config` read as in gpt2.hpp) or
                                       // "sequential" (`config` unused)
  LlamaConfig config;
  WeightBuffer values;              // (n_values) every tensor, perturbed in place by trials
  std::vector<TensorInfo> tensors;  // sorted by offset; disjoint; together they cover `values`

  // Elements of `values`: learned parameters and buffers together (the flat offset space).
  int64_t n_values() const { return static_cast<int64_t>(values.size()); }
  // Elements of the learned-parameter tensors (what "the model's parameters" counts).
  int64_t n_parameters() const { return count_with_role(tensors, TensorRole::parameter); }
  // Elements of the buffer tensors (0 for models without buffers).
  int64_t n_buffer_values() const { return count_with_role(tensors, TensorRole::buffer); }
  // The tensor called `name`; throws InputError naming the model file when absent.
  const TensorInfo& tensor(const std::string& name) const;
  const float* data(const std::string& name) const { return values.data() + tensor(name).offset; }
};

// Appends tensors back to back in a flat parameter array (each starts where the last ended).
void append_tensor(std::vector<TensorInfo>& tensors, const std::string& name,
                   std::vector<int64_t> shape);

// Equal forward-pass dimensions: dim, hidden_dim, layers, heads, kv heads and vocabulary.
bool same_dimensions(const LlamaConfig& a, const LlamaConfig& b);
// "dim=64 hidden_dim=172 layers=5 heads=8 kv_heads=4 vocab=512".
std::string dimensions_text(const LlamaConfig& config);

// Throws InputError unless `other` has the tensors of `model`: the same names, shapes and
// order (two checkpoints of one architecture). `what` introduces the message.
void check_same_tensors(const Model& model, const Model& other, const std::string& what);
// The same on tensor tables (offsets not compared) read from the files at `path` and
// `other_path`, before any values are loaded; `same_stored` also requires equal stored formats
// (values moved bit-exactly).
void check_same_tensor_tables(const std::vector<TensorInfo>& tensors, const std::string& path,
                              const std::vector<TensorInfo>& other, const std::string& other_path,
                              const std::string& what, bool same_stored);

// Statistics of one tensor's finite values (NaN and Inf left out): min, max and population std.
struct FiniteStats {
  float min = 0, max = 0;  // 0 when the tensor has no finite value
  double std = 0;
};
// finite_stats of every tensor, in table order. Each tensor is summed serially in offset order
// (so the result is bitwise the serial one); tensors are spread over the rank's OpenMP threads.
std::vector<FiniteStats> finite_stats(const Model& model);

// "64x64" style shape text.
std::string shape_text(const std::vector<int64_t>& shape);

}  // namespace fracsweep
