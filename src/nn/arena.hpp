#pragma once
// Internal to the nn layer: buffers carved out of one reusable float arena. A backward pass
// needs tens of megabytes of buffers per call; allocating them afresh each time costs a page
// fault per 4 KiB (hundreds of ms per call on virtual machines), so callers keep one arena
// that grows once and is reused by every call.
#include <cstdint>
#include <vector>

namespace fracsweep::arena {

// Hands out consecutive floats; counts only when built without storage (a dry run).
class Carver {
 public:
  Carver() = default;
  explicit Carver(float* base) : base_(base) {}
  float* take(int64_t count) {
    float* start = base_ == nullptr ? nullptr : base_ + used_;
    used_ += count;
    return start;
  }
  int64_t used() const { return used_; }

 private:
  float* base_ = nullptr;
  int64_t used_ = 0;
};

// Runs `assign(carver)` once to measure, grows `storage` to fit, then again to hand out the
// buffers; every buffer is uninitialised (whatever the previous call left).
template <class Assign>
void carve(std::vector<float>& storage, Assign&& assign) {
  Carver measure;
  assign(measure);
  if (static_cast<int64_t>(storage.size()) < measure.used()) {
    storage.resize(static_cast<size_t>(measure.used()));
  }
  Carver real(storage.data());
  assign(real);
}

}  // namespace fracsweep::arena
