#include "fracsweep/nn/kv_cache.hpp"

#include <numeric>

#include "fracsweep/nn/forward.hpp"

namespace fracsweep {

KvCache::KvCache(int64_t n_layers, int64_t capacity, int64_t kv_dim)
    : capacity_(capacity),
      kv_dim_(kv_dim),
      keys_(floats(n_layers * capacity * kv_dim)),
      values_(floats(n_layers * capacity * kv_dim)),
      positions_(floats(capacity)) {
  std::iota(positions_.begin(), positions_.end(), 0);
}

}  // namespace fracsweep
