#include "fracsweep/model/weight_buffer.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "fracsweep/util/error.hpp"
#include "fracsweep/util/huge_pages.hpp"

namespace fracsweep {

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

void WeightBuffer::Unmap::operator()(float* address) const {
  ::munmap(address, bytes);
}

WeightBuffer::WeightBuffer(size_t n) : own_(n) {
  advise_huge_pages(own_.data(), n * sizeof(float));  // the loader writes every value next
  point_at_private();
}

WeightBuffer WeightBuffer::map_file(const FileDescriptor& fd, const std::string& path, size_t n,
                                    Memory memory) {
  check_invariant(memory != Memory::private_memory, "map_file needs a file mapping kind");
  WeightBuffer buffer;
  buffer.memory_ = memory;
  if (n == 0) return buffer;
  const size_t bytes = n * sizeof(float);
  const int flags = memory == Memory::file_shared ? MAP_SHARED : MAP_PRIVATE;
  void* address = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, fd.get(), 0);
  if (address == MAP_FAILED) {
    throw RunError(path + ": cannot map " + std::to_string(bytes) +
                   " bytes of model values: " + std::strerror(errno));
  }
  buffer.mapping_ = std::unique_ptr<float, Unmap>(static_cast<float*>(address), Unmap{bytes});
  buffer.data_ = buffer.mapping_.get();
  buffer.size_ = n;
  return buffer;
}

WeightBuffer::WeightBuffer(const WeightBuffer& other) : own_(other.begin(), other.end()) {
  point_at_private();
}

WeightBuffer& WeightBuffer::operator=(const WeightBuffer& other) {
  if (this != &other) *this = WeightBuffer(other);
  return *this;
}

WeightBuffer::WeightBuffer(WeightBuffer&& other) noexcept
    : own_(std::move(other.own_)),
      mapping_(std::move(other.mapping_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      memory_(std::exchange(other.memory_, Memory::private_memory)) {}

WeightBuffer& WeightBuffer::operator=(WeightBuffer&& other) noexcept {
  if (this != &other) {
    own_ = std::move(other.own_);
    other.own_.clear();
    mapping_ = std::move(other.mapping_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    memory_ = std::exchange(other.memory_, Memory::private_memory);
  }
  return *this;
}

void WeightBuffer::check_private(const char* what) const {
  check_invariant(memory_ == Memory::private_memory,
                  std::string(what) + " on model values mapped from a node-local file");
}

void WeightBuffer::resize(size_t n) {
  check_private("resize");
  const size_t old = own_.size();
  own_.resize(n);
  if (n > old) std::fill(own_.begin() + static_cast<std::ptrdiff_t>(old), own_.end(), 0.0f);
  point_at_private();
}

void WeightBuffer::push_back(float value) {
  check_private("push_back");
  own_.push_back(value);
  point_at_private();
}

void WeightBuffer::append_at(const float* position, const std::vector<float>& appended) {
  check_private("insert");
  check_invariant(position == end(), "WeightBuffer::insert appends at the end only");
  own_.insert(own_.end(), appended.begin(), appended.end());
  point_at_private();
}

int WeightBuffer::page_shift() const {
  const auto page_values = static_cast<size_t>(::sysconf(_SC_PAGESIZE)) / sizeof(float);
  check_invariant(std::has_single_bit(page_values), "the memory page size is not a power of two");
  return std::countr_zero(page_values);
}

size_t WeightBuffer::page_count() const {
  return size_ == 0 ? 0 : ((size_ - 1) >> page_shift()) + 1;
}

void WeightBuffer::release_marked_pages(const std::vector<uint64_t>& touched) {
  const size_t page_bytes = (size_t{1} << page_shift()) * sizeof(float);
  const size_t pages = page_count();
  const auto marked = [&](size_t page) { return (touched[page / 64] >> (page % 64) & 1) != 0; };
  // One madvise per run of consecutive pages. The mapping's length is rounded up to whole
  // pages, so the last page is covered too.
  size_t page = 0;
  while (page < pages) {
    if (touched[page / 64] == 0) {  // 64 pages untouched: skip the word
      page = (page / 64 + 1) * 64;
      continue;
    }
    if (!marked(page)) {
      ++page;
      continue;
    }
    size_t end_page = page + 1;
    while (end_page < pages && marked(end_page)) ++end_page;
    char* start = reinterpret_cast<char*>(data_) + page * page_bytes;
    check_invariant(
        ::madvise(start, (end_page - page) * page_bytes, MADV_DONTNEED) == 0,
        std::string("madvise(MADV_DONTNEED) on model values failed: ") + std::strerror(errno));
    page = end_page;
  }
}

bool operator==(const WeightBuffer& a, const WeightBuffer& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

bool operator==(const WeightBuffer& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace fracsweep

namespace fracsweep {

namespace {

class PrivateWeights : public WeightsSource {
 public:
  ProvidedValues values_for(const std::string&, size_t n_values) const override {
    return {WeightBuffer(n_values), false};
  }
};

}  // namespace

const WeightsSource& private_weights() {
  static const PrivateWeights source;  // stateless
  return source;
}

}  // namespace fracsweep
