#pragma once
// The flat float32 buffer of a model's values (Model::values), in one of three kinds of memory:
//
// - private memory of this process (the default): allocated without zero-filling, since every
//   loader overwrites all of it;
// - a writable shared mapping of a node-local file, used once by the rank that converts a
//   model's weights into the file (par/node_weights.hpp);
// - a copy-on-write (MAP_PRIVATE) mapping of such a file. Every rank of a node maps the same
//   file, so the unperturbed pages exist once per node; a trial's writes copy the pages they touch
//   into this process only, invisible to every other rank. Once the trial has restored its values
//   bitwise, release_pages() drops those private copies and the pages fall back to the shared
//   ones (bitwise the original), so memory stays flat across trials.
//
// The API is the part of std::vector<float> that callers use (data, size, operator[],
// begin/end); growing (resize, push_back, insert at the end) is for private memory only, where
// tests and benchmarks build models value by value.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

// An open file descriptor, closed on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(other.release()) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  int fd_ = -1;
};

class WeightBuffer {
 public:
  using value_type = float;
  using size_type = size_t;
  using iterator = float*;
  using const_iterator = const float*;

  enum class Memory {
    private_memory,  // this process's own
    file_shared,     // writes go to the file (the converting rank only)
    file_private,    // copy-on-write view of the file; writes stay in this process
  };

  WeightBuffer() = default;
  // `n` values of private memory, uninitialised, advised onto huge pages (util/huge_pages.hpp).
  explicit WeightBuffer(size_t n);
  // The first `n` floats of the file `fd` (whose size must be at least n floats), mapped as
  // `memory` (file_shared or file_private). Throws RunError naming `path` when mmap fails.
  static WeightBuffer map_file(const FileDescriptor& fd, const std::string& path, size_t n,
                               Memory memory);

  // A copy is private memory with the same values.
  WeightBuffer(const WeightBuffer& other);
  WeightBuffer& operator=(const WeightBuffer& other);
  WeightBuffer(WeightBuffer&& other) noexcept;
  WeightBuffer& operator=(WeightBuffer&& other) noexcept;
  ~WeightBuffer() = default;

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  float& operator[](size_t i) { return data_[i]; }
  const float& operator[](size_t i) const { return data_[i]; }
  float* begin() { return data_; }
  float* end() { return data_ + size_; }
  const float* begin() const { return data_; }
  const float* end() const { return data_ + size_; }
  Memory memory() const { return memory_; }

  // Private memory only (throws RunError otherwise): std::vector semantics, new values zero.
  void resize(size_t n);
  void push_back(float value);
  // Appends [first, last) (which may lie inside this buffer) at `end()`, the only position.
  template <typename Iterator>
  void insert(const float* position, Iterator first, Iterator last) {
    append_at(position, std::vector<float>(first, last));  // a copy: [first, last) may move
  }

  // After the values at the offsets of `items` were written and then restored bitwise: drops
  // this process's copies of the pages holding them (file_private; a no-op otherwise, where
  // there is nothing to drop). `offset_of(item)` gives an item's int64_t value offset, so an
  // undo log is read in place, never copied (std::views::transform would do, but clang 14
  // cannot compile libstdc++ 12's views). Every value on those pages must equal the file's,
  // since the pages are re-read from it. Memory: one bit per page of the buffer.
  template <typename Items, typename OffsetOf>
  void release_pages(const Items& items, OffsetOf offset_of) {
    if (memory_ != Memory::file_private) return;
    std::vector<uint64_t> touched((page_count() + 63) / 64);  // (n_pages / 64) a bit per page
    const int shift = page_shift();
    for (const auto& item : items) {
      const int64_t offset = offset_of(item);
      check_invariant(offset >= 0 && static_cast<size_t>(offset) < size_,
                      "release_pages: offset outside the model values");
      const auto page = static_cast<uint64_t>(offset) >> shift;
      touched[page / 64] |= uint64_t{1} << (page % 64);
    }
    release_marked_pages(touched);
  }

  friend bool operator==(const WeightBuffer& a, const WeightBuffer& b);
  friend bool operator==(const WeightBuffer& a, const std::vector<float>& b);

 private:
  // Unmaps a file mapping on destruction.
  struct Unmap {
    size_t bytes;  // no initialiser: a nested NSDMI would make unique_ptr's default ctor unusable
    void operator()(float* address) const;
  };
  // Private memory: a vector whose resize leaves new elements uninitialised (the loaders
  // overwrite every value; zero-filling 4 GB first costs seconds).
  struct DefaultInit : std::allocator<float> {
    template <typename U>
    struct rebind {
      using other = DefaultInit;
    };
    void construct(float* p) { ::new (static_cast<void*>(p)) float; }
    void construct(float* p, float value) { ::new (static_cast<void*>(p)) float(value); }
  };
  void check_private(const char* what) const;
  int page_shift() const;     // log2 of the values per memory page
  size_t page_count() const;  // pages the buffer spans, the last one partial or whole
  // madvise(MADV_DONTNEED) over every run of consecutive pages whose bit is set in `touched`.
  void release_marked_pages(const std::vector<uint64_t>& touched);
  void append_at(const float* position, const std::vector<float>& appended);
  void point_at_private() {
    data_ = own_.data();
    size_ = own_.size();
  }

  std::vector<float, DefaultInit> own_;    // (n_values) private memory
  std::unique_ptr<float, Unmap> mapping_;  // file mappings
  float* data_ = nullptr;                  // (n_values) own_ or the mapping
  size_t size_ = 0;
  Memory memory_ = Memory::private_memory;
};

}  // namespace fracsweep

namespace fracsweep {

// Values a loader is handed for a model.
struct ProvidedValues {
  WeightBuffer buffer;  // (n_values)
  bool filled = false;  // already holds the model's converted values: the loader reads none
};

// Where loaders put a model's values: private memory to fill (private_weights()), or a
// node-local file that one rank fills and every rank of the node maps (par/node_weights.hpp).
class WeightsSource {
 public:
  virtual ~WeightsSource() = default;
  // The buffer for the `n_values` values of the model loaded from `model_path`.
  virtual ProvidedValues values_for(const std::string& model_path, size_t n_values) const = 0;
};

// Uninitialised private memory for every model.
const WeightsSource& private_weights();

}  // namespace fracsweep
