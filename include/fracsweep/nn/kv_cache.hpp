#pragma once
// Keys and values of one sequence being decoded token by token (incremental greedy decoding):
// each new token costs one row's forward pass, its attention reading the cached rows of the
// positions before it. Allocated once, for sequences of up to `capacity` positions.
#include <cstdint>
#include <vector>

namespace fracsweep {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t capacity, int64_t kv_dim);
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  // Layer `layer`'s rows (capacity, kv_dim): row t holds position t's key (after RoPE where the
  // architecture rotates keys) or value.
  float* keys(int64_t layer) { return keys_.data() + layer * capacity_ * kv_dim_; }
  float* values(int64_t layer) { return values_.data() + layer * capacity_ * kv_dim_; }
  // positions()[t] == t for t < capacity: the position ids of any run of rows (RoPE tables).
  const int32_t* positions() const { return positions_.data(); }

 private:
  int64_t capacity_ = 0;
  int64_t kv_dim_ = 0;
  std::vector<float> keys_;         // (n_layers, capacity, kv_dim)
  std::vector<float> values_;       // (n_layers, capacity, kv_dim)
  std::vector<int32_t> positions_;  // (capacity) 0 .. capacity - 1
};

}  // namespace fracsweep
