#pragma once
// Hugging Face model directories: config.json plus either model.safetensors or a sharded
// checkpoint (model.safetensors.index.json whose "weight_map" names, per tensor, a shard file in
// the same directory). Architectures (config.json "architectures"[0]):
//   LlamaForCausalLM  -> the Llama forward pass (llama.hpp); tensors renamed to llama2.c names.
//     HF stores q_proj/k_proj rows per head in "rotate-half" order (row i < head_dim/2 holds
//     rotation pair i's first component, row head_dim/2 + i its second); llama2.c pairs adjacent
//     rows (2i, 2i+1). The loader moves HF row j*head_dim/2 + i of each head to row 2i + j.
//   GPT2LMHeadModel   -> the GPT-2 forward pass (gpt2.hpp).
// Tensor dtypes F32, F16, BF16 (TensorInfo::stored records which). Directories have no
// tokenizer fracsweep reads: their evaluation is pre-tokenized ([eval] tokens, .npy).
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fracsweep/formats/json.hpp"
#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/model/model.hpp"

namespace fracsweep {

class HfCheckpoint {
 public:
  // Reads config.json and opens every shard; checks the index (shard names are plain file names
  // in the directory, every listed tensor is in its shard, no tensor in two shards).
  explicit HfCheckpoint(const std::string& directory);

  const std::string& directory() const { return directory_; }
  const JsonValue& config() const { return config_; }
  std::string config_path() const { return directory_ + "/config.json"; }
  // config.json "architectures"[0], e.g. "LlamaForCausalLM".
  const std::string& architecture() const { return architecture_; }

  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };
  const std::vector<std::pair<std::string, Entry>>& tensors() const { return tensors_; }
  const Entry* find(const std::string& name) const;  // nullptr when absent
  // The tensor's elements as float32: F32 as stored, F16/BF16 widened exactly. out: (count).
  void read_as_float(const Entry& entry, float* out) const;
  StoredType stored_type(const Entry& entry) const;  // InputError for other dtypes

  // Integer / number / bool members of config.json; InputError naming config.json and the key.
  int64_t config_int(const std::string& key) const;
  int64_t config_int(const std::string& key, int64_t fallback) const;
  double config_number(const std::string& key, double fallback) const;
  bool config_bool(const std::string& key, bool fallback) const;

 private:
  std::string directory_;
  JsonValue config_;
  std::string architecture_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::pair<std::string, Entry>> tensors_;    // by shard, then offset
  std::unordered_map<std::string, size_t> tensor_index_;  // name -> position in tensors_
};

// LlamaForCausalLM: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default num_attention_heads), vocab_size, max_position_embeddings,
// rms_norm_eps (default 1e-6), rope_theta (default 10000), tie_word_embeddings (default false);
// rope_scaling must be absent or null and hidden_act "silu".
LlamaConfig hf_llama_config(const HfCheckpoint& checkpoint);
// Checked parameter table in llama2.c order and names (see llama2c.hpp).
std::vector<TensorInfo> hf_llama_tensor_table(const HfCheckpoint& checkpoint,
                                              const LlamaConfig& config);

// GPT2LMHeadModel: n_embd, n_layer, n_head, n_inner (default 4 n_embd), vocab_size,
// n_positions, layer_norm_epsilon (default 1e-5), activation_function "gelu_new" (tanh GELU);
// as a LlamaConfig (see gpt2.hpp). Tensor names may carry the "transformer." prefix.
LlamaConfig hf_gpt2_config(const HfCheckpoint& checkpoint);
std::vector<TensorInfo> hf_gpt2_tensor_table(const HfCheckpoint& checkpoint,
                                             const LlamaConfig& config);

// Loads a LlamaForCausalLM or GPT2LMHeadModel directory.
Model load_hf_model(const std::string& directory, const WeightsSource& weights = private_weights());
Model load_hf_model(const HfCheckpoint& checkpoint,
                    const WeightsSource& weights = private_weights());
// The parameter table of the directory's model without reading the weights (checks, inspect).
std::vector<TensorInfo> hf_tensor_table(const HfCheckpoint& checkpoint);

}  // namespace fracsweep
